//! Whether a context's device can still take work: wgpu reports a lost device and
//! errors outside any error scope through callbacks; after either, every call returns
//! the error instead of hanging on a dead device or panicking in wgpu's default handler.

use std::sync::Mutex;

use crate::error::{Error, Result};

/// The first fault a device reported, if any.
#[derive(Debug, Default)]
pub(crate) struct Health {
    fault: Mutex<Option<Fault>>,
}

#[derive(Clone, Debug)]
enum Fault {
    Lost(String),
    Uncaptured(String),
}

impl Health {
    /// Records that the device was lost; the first fault is kept.
    pub(crate) fn device_lost(&self, message: String) {
        self.record(Fault::Lost(message));
    }

    /// Records an error no error scope caught; the first fault is kept.
    pub(crate) fn uncaptured(&self, message: String) {
        self.record(Fault::Uncaptured(message));
    }

    fn record(&self, fault: Fault) {
        let mut slot = self.fault.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.get_or_insert(fault);
    }

    /// `Ok` while no fault was reported.
    ///
    /// # Errors
    ///
    /// [`Error::DeviceLost`] or [`Error::Unhealthy`] with the first fault's message.
    pub(crate) fn check(&self) -> Result<()> {
        let slot = self.fault.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match slot.as_ref() {
            None => Ok(()),
            Some(Fault::Lost(message)) => Err(Error::DeviceLost(message.clone())),
            Some(Fault::Uncaptured(message)) => Err(Error::Unhealthy(message.clone())),
        }
    }
}
