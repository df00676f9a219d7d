//! Fused linear cross-entropy: the cross-entropy of the logits `H W^T + b` of hidden
//! states `H (N, D)` under a classifier `W (V, D)` with optional bias `b (V)`, and the
//! gradients of the reduced loss with respect to `H`, `W` and `b`, without the `N x V`
//! logits ever being stored whole.
//!
//! The rows are taken a window at a time, as many as fit the workspace bound
//! ([`LinearCrossEntropy::workspace_bytes`]; by default 256 MiB, or the device's largest
//! storage binding where that is smaller): the window's logits are
//! computed into the workspace by a tiled matmul (f32 sums), the fused cross-entropy
//! writes each row's loss and logsumexp and overwrites the logits with their gradient
//! `G = dloss/dlogits` in place (scaled for the whole batch's reduction), and two more
//! matmuls add the window's `G W` to `dH` and `G^T H_window` to `dW` (and its column sums
//! to `db`). With `N x V` logits, the largest buffer is the workspace, not `4 N V` bytes.
//! `G W` sums over all `V` classes for a window's few rows and `D` features, too few
//! blocks of outputs to fill a GPU: it is split over the classes, each block's slices on
//! workgroups of their own writing partial products to a small scratch buffer, which a
//! second pass adds in slice order (`plan` says when, and into how many slices).
//!
//! Without gradients (the loss and logsumexp only) no logits are stored at all: each
//! workgroup of the tiled matmul reduces its block of logits, from its registers, to
//! each of its rows' share of the loss over the block's 128 classes (the max, the sum of
//! exponentials relative to it, the sums the options need, the target's logit), and a
//! second pass merges each row's shares in the order of the classes into its loss and
//! logsumexp: 36 bytes per row and block instead of 256 bytes of logits. (A device
//! whose workgroup memory or storage bindings per stage are below what that kernel needs
//! takes the windows of logits instead.)
//!
//! Every option of [`crate::CrossEntropy`] over class-index targets applies: reduction,
//! `ignore_index`, label smoothing, class weights, z-loss, logit softcap, the logsumexp
//! per row. Storage f32, f16 or bf16 for `H`, `W`, `b` and the gradients (one type for
//! all); sums in f32, in a fixed order, so the same input gives the same bits.

mod batch;
mod encode;
mod host;

use crate::error::{Error, Result};
use crate::ops::cross_entropy::{CrossEntropy, Reduction, TargetBuffer, Targets};
use crate::shape::Shape;
use crate::tensor::{BufferRegion, TensorRef};
use batch::linear_shares_bytes;
pub(crate) use encode::reduces_blocks_in_place;

/// The sizes of a linear cross-entropy: `rows` hidden states of `hidden` features, and
/// `classes` classes (the classifier's rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinearShape {
    /// `N`: hidden states (tokens), one loss each.
    pub rows: usize,
    /// `D`: features per hidden state.
    pub hidden: usize,
    /// `V`: classes (vocabulary).
    pub classes: usize,
}

impl LinearShape {
    /// `rows` hidden states of `hidden` features over `classes` classes.
    #[must_use]
    pub const fn new(rows: usize, hidden: usize, classes: usize) -> Self {
        Self { rows, hidden, classes }
    }

    /// The shape of the logits the op never stores whole: `rows x classes`.
    #[must_use]
    pub const fn logits(&self) -> Shape {
        Shape::new(self.rows, self.classes)
    }

    /// Elements of `H`, `W`, and `N x V` (the logits), or [`Error::ShapeOverflow`].
    fn elements(&self) -> Result<[usize; 3]> {
        let product = |a: usize, b: usize| {
            a.checked_mul(b).ok_or(Error::ShapeOverflow { rows: self.rows, cols: self.classes })
        };
        Ok([
            product(self.rows, self.hidden)?,
            product(self.classes, self.hidden)?,
            product(self.rows, self.classes)?,
        ])
    }
}

/// Which gradients the op computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinearGradients {
    /// `dH`, `N x D`.
    pub hidden: bool,
    /// `dW`, `V x D`.
    pub classifier: bool,
    /// `db`, `V` (only with a bias).
    pub bias: bool,
}

impl LinearGradients {
    /// Every gradient (the bias's when there is a bias).
    pub const ALL: Self = Self { hidden: true, classifier: true, bias: true };
    /// None: the loss (and logsumexp) only.
    pub const NONE: Self = Self { hidden: false, classifier: false, bias: false };

    /// Whether any is wanted.
    #[must_use]
    pub const fn any(&self) -> bool {
        self.hidden || self.classifier || self.bias
    }
}

/// The host inputs of a linear cross-entropy, of one element type `T` (`f32`,
/// [`crate::f16`](struct@crate::f16) or [`crate::bf16`]).
#[derive(Clone, Copy, Debug)]
pub struct LinearCrossEntropyInput<'a, T = f32> {
    /// `H`, row-major `N x D`.
    pub hidden: &'a [T],
    /// `W`, row-major `V x D`.
    pub classifier: &'a [T],
    /// Optional `b`, `V`.
    pub bias: Option<&'a [T]>,
    /// `N`, `D`, `V`.
    pub shape: LinearShape,
    /// One class index per row ([`Targets::Probabilities`] is refused).
    pub targets: Targets<'a, T>,
    /// Optional class weights, `V`.
    pub weight: Option<&'a [f32]>,
    /// Optional upstream gradient per row, for [`Reduction::None`].
    pub grad_output: Option<&'a [f32]>,
}

impl<'a, T> LinearCrossEntropyInput<'a, T> {
    /// Hidden states and classifier of `shape` with their targets; no bias, weights or
    /// upstream gradient.
    #[must_use]
    pub const fn new(
        hidden: &'a [T],
        classifier: &'a [T],
        shape: LinearShape,
        targets: Targets<'a, T>,
    ) -> Self {
        Self { hidden, classifier, bias: None, shape, targets, weight: None, grad_output: None }
    }

    /// With a bias.
    #[must_use]
    pub const fn bias(mut self, bias: &'a [T]) -> Self {
        self.bias = Some(bias);
        self
    }

    /// With class weights.
    #[must_use]
    pub const fn weight(mut self, weight: &'a [f32]) -> Self {
        self.weight = Some(weight);
        self
    }

    /// With an upstream gradient per row (reduction none only).
    #[must_use]
    pub const fn grad_output(mut self, grad_output: &'a [f32]) -> Self {
        self.grad_output = Some(grad_output);
        self
    }
}

/// The results of a linear cross-entropy: from the GPU, losses in f32 and gradients in the
/// inputs' element type `G`; from the reference, all in f64.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinearCrossEntropyOutput<G, L = G> {
    /// One loss per row for [`Reduction::None`], else one value.
    pub loss: Vec<L>,
    /// Each row's logsumexp of its (softcapped) logits, when asked for.
    pub lse: Option<Vec<L>>,
    /// `dH`, `N x D`, when asked for.
    pub grad_hidden: Option<Vec<G>>,
    /// `dW`, `V x D`, when asked for.
    pub grad_classifier: Option<Vec<G>>,
    /// `db`, `V`, when asked for and there is a bias.
    pub grad_bias: Option<Vec<G>>,
}

/// The GPU buffers of a linear cross-entropy: regions of the caller's buffers. `H`, `W`,
/// `b` and the gradients share one storage type.
#[derive(Clone, Copy, Debug)]
pub struct LinearCrossEntropyBuffers<'a> {
    /// `H`, row-major `N x D`.
    pub hidden: TensorRef<'a>,
    /// `W`, row-major `V x D`.
    pub classifier: TensorRef<'a>,
    /// Optional `b`, `V`.
    pub bias: Option<TensorRef<'a>>,
    /// Class targets, one per row ([`TargetBuffer::Probabilities`] is refused).
    pub targets: TargetBuffer<'a>,
    /// Optional class weights, `V` f32.
    pub weight: Option<BufferRegion<'a>>,
    /// Optional upstream gradient, `N` f32, for [`Reduction::None`].
    pub grad_output: Option<BufferRegion<'a>>,
    /// The loss: `N` f32 for [`Reduction::None`], one f32 otherwise.
    pub loss: BufferRegion<'a>,
    /// Each row's logsumexp, `N` f32: written when given.
    pub lse: Option<BufferRegion<'a>>,
    /// `dH`, `N x D`: written when given.
    pub grad_hidden: Option<TensorRef<'a>>,
    /// `dW`, `V x D`: written when given.
    pub grad_classifier: Option<TensorRef<'a>>,
    /// `db`, `V`: written when given (needs a bias).
    pub grad_bias: Option<TensorRef<'a>>,
    /// Four u32 status words (`STORAGE | COPY_DST`), as the cross-entropy's
    /// ([`crate::CrossEntropyStatus`]): rows whose target is out of range.
    pub status: Option<BufferRegion<'a>>,
}

impl<'a> LinearCrossEntropyBuffers<'a> {
    /// The inputs, their targets and where the loss goes; no gradient.
    #[must_use]
    pub fn new(
        hidden: impl Into<TensorRef<'a>>,
        classifier: impl Into<TensorRef<'a>>,
        targets: TargetBuffer<'a>,
        loss: impl Into<BufferRegion<'a>>,
    ) -> Self {
        Self {
            hidden: hidden.into(),
            classifier: classifier.into(),
            bias: None,
            targets,
            weight: None,
            grad_output: None,
            loss: loss.into(),
            lse: None,
            grad_hidden: None,
            grad_classifier: None,
            grad_bias: None,
            status: None,
        }
    }

    /// With a bias.
    #[must_use]
    pub fn with_bias(mut self, bias: impl Into<TensorRef<'a>>) -> Self {
        self.bias = Some(bias.into());
        self
    }

    /// With class weights.
    #[must_use]
    pub fn with_weight(mut self, weight: impl Into<BufferRegion<'a>>) -> Self {
        self.weight = Some(weight.into());
        self
    }

    /// With an upstream gradient per row (reduction none only).
    #[must_use]
    pub fn with_grad_output(mut self, grad_output: impl Into<BufferRegion<'a>>) -> Self {
        self.grad_output = Some(grad_output.into());
        self
    }

    /// With a logsumexp per row.
    #[must_use]
    pub fn with_lse(mut self, lse: impl Into<BufferRegion<'a>>) -> Self {
        self.lse = Some(lse.into());
        self
    }

    /// With `dH`.
    #[must_use]
    pub fn with_grad_hidden(mut self, grad: impl Into<TensorRef<'a>>) -> Self {
        self.grad_hidden = Some(grad.into());
        self
    }

    /// With `dW`.
    #[must_use]
    pub fn with_grad_classifier(mut self, grad: impl Into<TensorRef<'a>>) -> Self {
        self.grad_classifier = Some(grad.into());
        self
    }

    /// With `db`.
    #[must_use]
    pub fn with_grad_bias(mut self, grad: impl Into<TensorRef<'a>>) -> Self {
        self.grad_bias = Some(grad.into());
        self
    }

    /// With status words.
    #[must_use]
    pub fn with_status(mut self, status: impl Into<BufferRegion<'a>>) -> Self {
        self.status = Some(status.into());
        self
    }
}

/// How the op walks the rows: windows of `window_rows` rows, each with its logits (or,
/// without gradients, only its rows' statistics per block of classes) in a workspace of
/// `workspace_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearPlan {
    /// Rows per window (the last may have fewer).
    pub window_rows: usize,
    /// Windows.
    pub windows: usize,
    /// Bytes of the workspace: the largest buffer the op allocates.
    pub workspace_bytes: u64,
    /// Whether a window's logits are stored in the workspace (the gradients need them),
    /// else only its rows' statistics per block of classes ([`LINEAR_SHARE_BYTES`] per
    /// [`LINEAR_BLOCK_CLASSES`] classes), reduced from each block of logits as it is
    /// computed.
    pub stores_logits: bool,
}

/// Classes per block of the forward without stored logits: each row leaves one share of
/// statistics per block.
pub const LINEAR_BLOCK_CLASSES: usize = crate::kernels::MATMUL_TILE as usize;

/// Bytes of one row's share of statistics per block of classes (its max, its sum of
/// exponentials, and the loss's sums relative to that max).
pub const LINEAR_SHARE_BYTES: u64 = crate::kernels::LINEAR_SHARE_BYTES;

/// The default bound on the workspace, a memory budget: 256 MiB, or less where the
/// device's largest storage binding or buffer is smaller (128 MiB under wgpu's default
/// limits). Enough for windows of at least 64 rows of f32 logits up to 262144 classes.
pub const DEFAULT_WORKSPACE_BYTES: u64 = 256 << 20;

/// The most rows of one window: the bias's column sums walk a window's rows in one loop,
/// which llvmpipe cuts off past 65535 iterations.
pub(crate) const MAX_WINDOW_ROWS: usize = 32768;

/// What bounds a window of rows on a device: its storage-binding and buffer limits and
/// the alignment of a binding's offset (windows start where every per-row array bound
/// at their first row starts on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WindowLimits {
    /// `Limits::max_storage_buffer_binding_size`.
    pub(crate) max_binding: u64,
    /// `Limits::max_buffer_size`.
    pub(crate) max_buffer: u64,
    /// `Limits::min_storage_buffer_offset_alignment`.
    pub(crate) offset_alignment: u64,
}

impl WindowLimits {
    /// The limits of the device of `caps`.
    pub(crate) fn of(caps: &crate::plan::DeviceCaps) -> Self {
        Self {
            max_binding: caps.max_storage_binding_bytes,
            max_buffer: caps.max_buffer_bytes,
            offset_alignment: u64::from(caps.storage_offset_alignment),
        }
    }

    /// wgpu's default limits.
    #[cfg(test)]
    const DEFAULT: Self = Self { max_binding: 128 << 20, max_buffer: 256 << 20, offset_alignment: 256 };
}

/// Bytes per row of each array the op binds at a window's first row: the targets (4 or
/// 8), the losses, logsumexps and upstream gradients (4), and `H` and `dH` (`D`
/// elements of the storage type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RowArrays {
    /// Bytes of one target.
    pub(crate) target_bytes: u64,
    /// Bytes of one row of `H`.
    pub(crate) hidden_row_bytes: u64,
}

impl RowArrays {
    /// The fewest rows a window may have but the last, so that each array's part for the
    /// next window starts at a multiple of `alignment` bytes: the least common multiple,
    /// over the arrays, of `alignment / gcd(alignment, row bytes)`.
    pub(crate) fn row_multiple(self, alignment: u64) -> usize {
        let alignment = alignment.max(1);
        let rows_for = |bytes: u64| alignment / gcd(alignment, bytes.max(1));
        let multiple = [4, self.target_bytes, self.hidden_row_bytes].into_iter().map(rows_for).fold(1, lcm);
        usize::try_from(multiple).unwrap_or(usize::MAX)
    }
}

const fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

const fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(a, b) * b
}

/// The fused linear cross-entropy and its options: those of the cross-entropy (PyTorch's
/// defaults: mean, `ignore_index` -100, no smoothing), which gradients to compute (all by
/// default), and the bound on its logits workspace.
///
/// ```no_run
/// # fn main() -> Result<(), wgpu_softmax::Error> {
/// use wgpu_softmax::{Context, LinearCrossEntropy, LinearCrossEntropyInput, LinearShape, Targets};
/// let ctx = Context::new()?;
/// let shape = LinearShape::new(2, 3, 4);
/// let hidden = [0.5, -1.0, 2.0, 0.0, 1.0, 1.5];
/// let classifier = [0.1; 12];
/// let input = LinearCrossEntropyInput::new(&hidden, &classifier, shape, Targets::I64(&[3, 0]));
/// let out = LinearCrossEntropy::new().run(&ctx, &input)?;
/// println!("loss {}, dW[0] {:?}", out.loss[0], out.grad_classifier.map(|g| g[0]));
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearCrossEntropy {
    loss: CrossEntropy,
    gradients: LinearGradients,
    workspace_bytes: Option<u64>,
}

impl Default for LinearCrossEntropy {
    fn default() -> Self {
        Self::new()
    }
}

impl LinearCrossEntropy {
    /// PyTorch's defaults, every gradient, the workspace derived from the device.
    #[must_use]
    pub const fn new() -> Self {
        Self { loss: CrossEntropy::new(), gradients: LinearGradients::ALL, workspace_bytes: None }
    }

    /// Sets the reduction.
    #[must_use]
    pub const fn reduction(mut self, reduction: Reduction) -> Self {
        self.loss = self.loss.reduction(reduction);
        self
    }

    /// Sets the class index whose rows are ignored (default -100).
    #[must_use]
    pub const fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.loss = self.loss.ignore_index(ignore_index);
        self
    }

    /// Sets the label smoothing, in `[0, 1]`.
    #[must_use]
    pub const fn label_smoothing(mut self, label_smoothing: f32) -> Self {
        self.loss = self.loss.label_smoothing(label_smoothing);
        self
    }

    /// Adds the z-loss `z * lse^2` to each row not ignored (see [`CrossEntropy::z_loss`]).
    #[must_use]
    pub const fn z_loss(mut self, z: f32) -> Self {
        self.loss = self.loss.z_loss(z);
        self
    }

    /// Caps the logits softly at `t` (see [`CrossEntropy::softcap`]).
    #[must_use]
    pub const fn softcap(mut self, t: f32) -> Self {
        self.loss = self.loss.softcap(t);
        self
    }

    /// Returns each row's logsumexp from [`LinearCrossEntropy::run`].
    #[must_use]
    pub const fn lse(mut self, lse: bool) -> Self {
        self.loss = self.loss.lse(lse);
        self
    }

    /// Sets which gradients [`LinearCrossEntropy::run`] computes (the GPU-resident API
    /// computes those it is given buffers for).
    #[must_use]
    pub const fn gradients(mut self, gradients: LinearGradients) -> Self {
        self.gradients = gradients;
        self
    }

    /// Bounds the workspace, the largest buffer the op allocates: windows hold as many
    /// rows as fit in `bytes` (and in one storage binding). A row takes its f32 logits
    /// where gradients are computed, else only its statistics per block of classes
    /// ([`LinearPlan::stores_logits`]). Every window but the last starts a whole number
    /// of rows after the one before, at offsets the device can bind (64 rows under wgpu's
    /// default 256-byte alignment); a bound below that many rows is refused with the
    /// bytes it needs. Without this call the bound is [`DEFAULT_WORKSPACE_BYTES`], or
    /// the device's largest storage binding where that is smaller.
    #[must_use]
    pub const fn workspace_bytes(mut self, bytes: u64) -> Self {
        self.workspace_bytes = Some(bytes);
        self
    }

    /// The cross-entropy options.
    #[must_use]
    pub const fn get_cross_entropy(&self) -> CrossEntropy {
        self.loss
    }

    /// The gradients [`LinearCrossEntropy::run`] computes.
    #[must_use]
    pub const fn get_gradients(&self) -> LinearGradients {
        self.gradients
    }

    /// The workspace bound the caller set, if any (else the default, derived from the
    /// device: see [`LinearCrossEntropy::workspace_bytes`]).
    #[must_use]
    pub const fn get_workspace_bytes(&self) -> Option<u64> {
        self.workspace_bytes
    }

    /// Plans the windows of `shape` on a device of `limits`, for per-row arrays of
    /// `arrays`, each window's logits in the workspace where `stores_logits`, else only
    /// its rows' shares.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] when the caller's workspace bound cannot hold the fewest
    /// rows a window may have (and there are more rows), [`Error::LimitExceeded`] when
    /// that many rows, or `W` in f32, do not fit one binding, [`Error::ShapeOverflow`].
    pub(crate) fn plan_windows(
        &self,
        shape: LinearShape,
        limits: WindowLimits,
        arrays: RowArrays,
        stores_logits: bool,
    ) -> Result<LinearPlan> {
        let [_, classifier, _] = shape.elements()?;
        let row_bytes = if stores_logits {
            4 * shape.classes.max(1) as u64
        } else {
            linear_shares_bytes(1, shape.classes.max(1))
        };
        let what = if stores_logits { "f32 logits" } else { "statistics per block of classes" };
        let classifier_bytes = 4 * classifier as u64;
        if classifier_bytes > limits.max_binding {
            return Err(Error::LimitExceeded {
                limit: "max_storage_buffer_binding_size (the classifier in f32)",
                required: classifier_bytes,
                available: limits.max_binding,
            });
        }
        // The workspace is bound whole in 16-byte vectors, and its buffer has 16 bytes
        // past the last row.
        let device_bound = limits.max_binding.min(limits.max_buffer.saturating_sub(16)) / 16 * 16;
        let bound = self.workspace_bytes.unwrap_or(DEFAULT_WORKSPACE_BYTES).min(device_bound);
        let fit = usize::try_from(bound / row_bytes).unwrap_or(usize::MAX).min(MAX_WINDOW_ROWS);
        let multiple = arrays.row_multiple(limits.offset_alignment);
        let window_rows = if shape.rows <= fit {
            shape.rows.max(1)
        } else {
            let rows = fit / multiple * multiple;
            if rows == 0 {
                let needed = row_bytes * multiple as u64;
                if needed > device_bound || self.workspace_bytes.is_none() {
                    return Err(Error::LimitExceeded {
                        limit: "max_storage_buffer_binding_size (the fewest rows of a window of the workspace)",
                        required: needed,
                        available: device_bound,
                    });
                }
                return Err(Error::InvalidOption {
                    option: "workspace_bytes",
                    problem: format!(
                        "{bound} bytes hold fewer than {multiple} rows of {} classes' {what} (windows start at \
                         multiples of {multiple} rows on this device); give at least {needed}, or leave the \
                         workspace to its default",
                        shape.classes
                    ),
                });
            }
            rows
        };
        Ok(LinearPlan {
            window_rows,
            windows: shape.rows.div_ceil(window_rows),
            workspace_bytes: window_rows as u64 * row_bytes,
            stores_logits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F32_ROWS: RowArrays = RowArrays { target_bytes: 8, hidden_row_bytes: 4 * 64 };

    #[test]
    fn windows_are_whole_multiples_of_the_row_multiple_within_the_bound() {
        let limits = WindowLimits::DEFAULT;
        let op = LinearCrossEntropy::new().workspace_bytes(1 << 20);
        let plan = op.plan_windows(LinearShape::new(4096, 64, 1000), limits, F32_ROWS, true).unwrap();
        // 1 MiB / 4000 bytes = 262 rows, down to a multiple of 64: 256.
        assert_eq!((plan.window_rows, plan.windows, plan.workspace_bytes), (256, 16, 256 * 4000));
        // Fewer rows than fit: one window of them all.
        let plan = op.plan_windows(LinearShape::new(100, 64, 1000), limits, F32_ROWS, true).unwrap();
        assert_eq!((plan.window_rows, plan.windows), (100, 1));
        // A bound below 64 rows is refused, naming what it needs.
        let small = LinearCrossEntropy::new().workspace_bytes(1000);
        assert!(matches!(
            small.plan_windows(LinearShape::new(4096, 64, 1000), limits, F32_ROWS, true),
            Err(Error::InvalidOption { option: "workspace_bytes", .. })
        ));
        // The binding limit caps the workspace.
        let narrow = WindowLimits { max_binding: 1 << 20, ..limits };
        let plan = LinearCrossEntropy::new()
            .workspace_bytes(u64::MAX)
            .plan_windows(LinearShape::new(1 << 20, 8, 1 << 10), narrow, F32_ROWS, true)
            .unwrap();
        assert_eq!(plan.window_rows, 256);
        // Narrow rows: the loop bound caps the window.
        let plan = LinearCrossEntropy::new()
            .plan_windows(LinearShape::new(100_000, 8, 2), limits, F32_ROWS, true)
            .unwrap();
        assert_eq!((plan.window_rows, plan.windows), (MAX_WINDOW_ROWS, 4));
    }

    /// The default workspace takes every vocabulary up to 2^18 under wgpu's default
    /// limits, in windows whose logits fit one binding.
    #[test]
    fn the_default_workspace_runs_real_vocabularies_on_default_limits() {
        let limits = WindowLimits::DEFAULT;
        for classes in [50257, 65536, 128_256, 151_936, 256_000, 262_144] {
            for arrays in [F32_ROWS, RowArrays { target_bytes: 4, hidden_row_bytes: 2 * 33 }] {
                let plan = LinearCrossEntropy::new()
                    .plan_windows(LinearShape::new(4096, 64, classes), limits, arrays, true)
                    .unwrap();
                let multiple = arrays.row_multiple(limits.offset_alignment);
                assert!(
                    plan.window_rows >= multiple && plan.window_rows.is_multiple_of(multiple),
                    "{classes}: {plan:?}"
                );
                assert!(plan.workspace_bytes <= limits.max_binding, "{classes}: {plan:?}");
            }
        }
        // A bound set by the caller below the row multiple is an error, not a default.
        let set = LinearCrossEntropy::new().workspace_bytes(32 << 20);
        assert!(matches!(
            set.plan_windows(LinearShape::new(4096, 64, 256_000), limits, F32_ROWS, true),
            Err(Error::InvalidOption { option: "workspace_bytes", .. })
        ));
        // A vocabulary whose fewest rows exceed a binding: the limit, named.
        assert!(matches!(
            LinearCrossEntropy::new().plan_windows(
                LinearShape::new(4096, 8, 1 << 20),
                limits,
                F32_ROWS,
                true
            ),
            Err(Error::LimitExceeded { .. })
        ));
    }

    #[test]
    fn the_row_multiple_aligns_every_array() {
        // 256-byte alignment: 4-byte losses need 64 rows; 2-byte rows of odd D need 128.
        assert_eq!(F32_ROWS.row_multiple(256), 64);
        assert_eq!(RowArrays { target_bytes: 4, hidden_row_bytes: 2 * 33 }.row_multiple(256), 128);
        assert_eq!(RowArrays { target_bytes: 4, hidden_row_bytes: 2 * 32 }.row_multiple(256), 64);
        // A device that binds at any 16-byte offset: 4 rows.
        assert_eq!(F32_ROWS.row_multiple(16), 4);
    }

    #[test]
    fn without_logits_a_row_takes_a_share_per_block_of_classes() {
        let op = LinearCrossEntropy::new().workspace_bytes(1 << 20);
        // 1000 classes: 8 blocks of 128, 8 * 36 = 288 bytes a row; 1 MiB holds 3640
        // rows, down to 3584.
        assert_eq!(LINEAR_BLOCK_CLASSES, 128);
        let plan = op
            .plan_windows(LinearShape::new(4096, 64, 1000), WindowLimits::DEFAULT, F32_ROWS, false)
            .unwrap();
        assert_eq!(plan.workspace_bytes, 3584 * 8 * LINEAR_SHARE_BYTES);
        assert_eq!((plan.window_rows, plan.windows, plan.stores_logits), (3584, 2, false));
        assert_eq!(LINEAR_SHARE_BYTES, 36);
    }
}
