//! Fused linear cross-entropy: the cross-entropy of the logits `H W^T + b` of hidden
//! states `H (N, D)` under a classifier `W (V, D)` with optional bias `b (V)`, and the
//! gradients of the reduced loss with respect to `H`, `W` and `b`, without the `N x V`
//! logits ever being stored whole.
//!
//! The rows are taken a window at a time, as many as fit the workspace bound
//! ([`LinearCrossEntropy::workspace_bytes`], 32 MiB by default): the window's logits are
//! computed into the workspace by a tiled matmul (f32 sums), the fused cross-entropy
//! writes each row's loss and logsumexp and overwrites the logits with their gradient
//! `G = dloss/dlogits` in place (scaled for the whole batch's reduction), and two more
//! matmuls add the window's `G W` to `dH` and `G^T H_window` to `dW` (and its column sums
//! to `db`). With `N x V` logits, the largest buffer is the workspace, not `4 N V` bytes.
//!
//! Without gradients (the loss and logsumexp only) no logits are stored at all: each
//! workgroup of the tiled matmul reduces its block of logits, from its registers, to
//! each of its rows' share of the loss over the block's 64 classes (the max, the sum of
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

mod encode;
mod host;

use crate::error::{Error, Result};
use crate::ops::cross_entropy::{CrossEntropy, Reduction, TargetBuffer, Targets, linear_shares_bytes};
use crate::shape::Shape;
use crate::tensor::{BufferRegion, TensorRef};

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
pub const LINEAR_SHARE_BYTES: u64 = crate::kernels::OpKernel::LinearCrossEntropy.share_bytes();

/// The default bound on the logits workspace: 32 MiB.
pub const DEFAULT_WORKSPACE_BYTES: u64 = 32 << 20;

/// Windows of rows start at multiples of this many rows, so that every array bound at a
/// window's rows (targets, losses, `H` and `dH` in any storage type) starts at a multiple
/// of 256 bytes, the largest storage offset alignment wgpu allows.
pub(crate) const WINDOW_ROW_MULTIPLE: usize = 128;

/// The most rows of one window: the bias's column sums walk a window's rows in one loop,
/// which llvmpipe cuts off past 65535 iterations.
pub(crate) const MAX_WINDOW_ROWS: usize = 32768;

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
    workspace_bytes: u64,
}

impl Default for LinearCrossEntropy {
    fn default() -> Self {
        Self::new()
    }
}

impl LinearCrossEntropy {
    /// PyTorch's defaults, every gradient, a 32 MiB workspace.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            loss: CrossEntropy::new(),
            gradients: LinearGradients::ALL,
            workspace_bytes: DEFAULT_WORKSPACE_BYTES,
        }
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

    /// Bounds the workspace: windows hold as many rows as fit in `bytes`, in multiples of
    /// 128 rows, and at least 128 rows (or all of them, when fewer). A row takes its f32
    /// logits where gradients are computed, else only its statistics per block of classes
    /// ([`LinearPlan::stores_logits`]).
    #[must_use]
    pub const fn workspace_bytes(mut self, bytes: u64) -> Self {
        self.workspace_bytes = bytes;
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

    /// The workspace bound.
    #[must_use]
    pub const fn get_workspace_bytes(&self) -> u64 {
        self.workspace_bytes
    }

    /// Plans the windows of `shape` on a device whose storage bindings hold at most
    /// `max_binding` bytes, each window's logits in the workspace where `stores_logits`,
    /// else only its rows' shares.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] when the workspace bound cannot hold 128 rows (and there
    /// are more rows), [`Error::LimitExceeded`] when a window of 128 rows, `W` or `dW` in
    /// f32 does not fit one binding, [`Error::ShapeOverflow`].
    pub(crate) fn plan_windows(
        &self,
        shape: LinearShape,
        max_binding: u64,
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
        if classifier_bytes > max_binding {
            return Err(Error::LimitExceeded {
                limit: "max_storage_buffer_binding_size (the classifier in f32)",
                required: classifier_bytes,
                available: max_binding,
            });
        }
        let bound = self.workspace_bytes.min(max_binding);
        let fit = usize::try_from(bound / row_bytes).unwrap_or(usize::MAX).min(MAX_WINDOW_ROWS);
        let window_rows = if shape.rows <= fit {
            shape.rows.max(1)
        } else {
            let rows = fit / WINDOW_ROW_MULTIPLE * WINDOW_ROW_MULTIPLE;
            if rows == 0 {
                let needed = row_bytes * WINDOW_ROW_MULTIPLE as u64;
                if needed > max_binding {
                    return Err(Error::LimitExceeded {
                        limit: "max_storage_buffer_binding_size (128 rows of the workspace)",
                        required: needed,
                        available: max_binding,
                    });
                }
                return Err(Error::InvalidOption {
                    option: "workspace_bytes",
                    problem: format!(
                        "{} bytes hold fewer than {WINDOW_ROW_MULTIPLE} rows of {} classes' {what}; give at least {needed}",
                        self.workspace_bytes, shape.classes
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

    #[test]
    fn windows_are_whole_multiples_of_128_rows_within_the_bound() {
        let op = LinearCrossEntropy::new().workspace_bytes(1 << 20);
        let plan = op.plan_windows(LinearShape::new(4096, 64, 1000), 128 << 20, true).unwrap();
        // 1 MiB / 4000 bytes = 262 rows, down to 256.
        assert_eq!((plan.window_rows, plan.windows, plan.workspace_bytes), (256, 16, 256 * 4000));
        // Fewer rows than fit: one window of them all.
        let plan = op.plan_windows(LinearShape::new(100, 64, 1000), 128 << 20, true).unwrap();
        assert_eq!((plan.window_rows, plan.windows), (100, 1));
        // A bound below 128 rows is refused, naming what it needs.
        let small = LinearCrossEntropy::new().workspace_bytes(1000);
        assert!(matches!(
            small.plan_windows(LinearShape::new(4096, 64, 1000), 128 << 20, true),
            Err(Error::InvalidOption { option: "workspace_bytes", .. })
        ));
        // The binding limit caps the workspace.
        let plan = LinearCrossEntropy::new()
            .workspace_bytes(u64::MAX)
            .plan_windows(LinearShape::new(1 << 20, 8, 1 << 10), 1 << 20, true)
            .unwrap();
        assert_eq!(plan.window_rows, 256);
        // Narrow rows: the loop bound caps the window.
        let plan =
            LinearCrossEntropy::new().plan_windows(LinearShape::new(100_000, 8, 2), 128 << 20, true).unwrap();
        assert_eq!((plan.window_rows, plan.windows), (MAX_WINDOW_ROWS, 4));
    }

    #[test]
    fn without_logits_a_row_takes_a_share_per_block_of_classes() {
        let op = LinearCrossEntropy::new().workspace_bytes(1 << 20);
        // 1000 classes: 16 blocks of 64, 16 * 36 = 576 bytes a row; 1 MiB holds 1820
        // rows, down to 1792.
        let plan = op.plan_windows(LinearShape::new(4096, 64, 1000), 128 << 20, false).unwrap();
        assert_eq!(plan.workspace_bytes, 1792 * 16 * LINEAR_SHARE_BYTES);
        assert_eq!((plan.window_rows, plan.windows, plan.stores_logits), (1792, 3, false));
        assert_eq!(LINEAR_SHARE_BYTES, 36);
    }
}
