// Fused softmax cross-entropy: for each row, one pass for the statistics and one for the
// gradient, writing the row's loss, its gradient and (optionally) its argmax.
//
// With m the row max, s = sum exp(x - m), logp_c = x_c - m - ln(s), q_c = exp(logp_c):
//
// class-index targets y, class weights w (all 1 without weights), smoothing e, C classes:
//   loss = (1 - e) * w_y * (-logp_y) + (e / C) * sum_c w_c * (-logp_c)
//   dloss/dx_c = q_c * ((1 - e) * w_y + (e / C) * W) - (1 - e) * w_y * [c == y] - (e / C) * w_c
//   with W = sum_c w_c;
// probability targets p, smoothed to p' = p * (1 - e) + e / C:
//   loss = sum_c w_c * p'_c * (-logp_c)
//   dloss/dx_c = q_c * sum_k w_k * p'_k - w_c * p'_c.
// The gradient is then scaled for the reduction: by the upstream gradient of the row
// (none), 1 (sum), 1 / sum of w_y over the rows not ignored (mean, class indices) or
// 1 / rows (mean, probabilities). -logp_c is computed as (m - x_c) + ln(s): never the
// log of a probability, so logits [0, 1000] with target 0 give a loss of exactly 1000.
//
// Needs common.wgsl and cross_entropy_targets.wgsl in front of it.

// Reduction none only: scale each row's gradient by an upstream gradient.
override HAS_UPSTREAM: bool = false;
// 0: no gradient, 1: into the grad buffer, 2: into the logits buffer itself.
override GRADIENT: u32 = 1u;
override ARGMAX: bool = false;

const GRADIENT_NONE: u32 = 0u;
const GRADIENT_IN_PLACE: u32 = 2u;

// Status words: [0] correct predictions, [1] rows with a bad target,
// [2] 0xffffffff - (first bad row), so that a zeroed buffer means "none" and atomicMax
// keeps the first; [3] unused.
const STATUS_CORRECT: u32 = 0u;
const STATUS_BAD_ROWS: u32 = 1u;
const STATUS_FIRST_BAD_ROW: u32 = 2u;

@group(0) @binding(0) var<uniform> params: Params;
// Read-write so that the gradient can replace the logits (GRADIENT_IN_PLACE).
@group(0) @binding(1) var<storage, read_write> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
// Reduction none: the upstream gradient per row. Mean with class indices: the totals of
// cross_entropy_reduce.wgsl, [0] being the total weight.
@group(0) @binding(4) var<storage, read_write> scale: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad: array<f32>;
@group(0) @binding(6) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(7) var<storage, read_write> argmax: array<u32>;
@group(0) @binding(8) var<storage, read_write> status: array<atomic<u32>>;

fn positive_infinity() -> f32 {
    return bitcast<f32>(POSITIVE_INFINITY_BITS);
}

// An order-preserving u32 key of a float, for argmax without float comparisons: NaN and
// +inf rank above everything (as in PyTorch, where NaN is the max), -inf below every
// finite value. Ties go to the lowest index.
fn argmax_key(x: f32) -> u32 {
    if (is_nan_or_positive_infinity(x)) {
        return 0xffffffffu;
    }
    let bits = bitcast<u32>(x);
    if ((bits & 0x80000000u) != 0u) {
        return ~bits;
    }
    return bits | 0x80000000u;
}

struct Best {
    key: u32,
    index: u32,
}

fn best_merge(a: Best, b: Best) -> Best {
    if (b.key > a.key || (b.key == a.key && b.index < a.index)) {
        return b;
    }
    return a;
}

// What one invocation learns from its share of a row in the first pass.
struct LaneStats {
    stats: RowStats,
    best: Best,
    // Class indices: sum of w_c (needed with smoothing). Probabilities: sum of w_c * p'_c.
    target_mass: f32,
}

fn lane_stats_merge(a: LaneStats, b: LaneStats) -> LaneStats {
    return LaneStats(row_stats_merge(a.stats, b.stats), best_merge(a.best, b.best), a.target_mass + b.target_mass);
}

fn first_pass(row: u32, first: u32, stride: u32) -> LaneStats {
    let row_start = row * params.cols;
    var stats = row_stats_empty();
    var best = Best(0u, 0xffffffffu);
    var mass = 0.0;
    for (var c = first; c < params.cols; c += stride) {
        let x = logits[row_start + c];
        stats = row_stats_push(stats, x);
        if (ARGMAX) {
            best = best_merge(best, Best(argmax_key(x), c));
        }
        if (TARGET_KIND == TARGETS_PROBABILITIES) {
            mass += class_weight(c) * smoothed_probability(row_start + c);
        } else if (HAS_WEIGHT && params.label_smoothing > 0.0) {
            mass += weight[c];
        }
    }
    return LaneStats(stats, best, mass);
}

// Everything the second pass needs to know about its row.
struct RowContext {
    row: u32,
    target_class: i32,
    // ln(s): -logp_c = (m - x_c) + ln(s), the difference first, so that logits near
    // 1e4 (f32 spacing 1e-3) lose nothing to rounding m + ln(s).
    log_sum: f32,
    row_max: f32,
    // The gradient is scale * (q_c * q_coefficient - target term).
    q_coefficient: f32,
    scale: f32,
    undefined: bool,
}

fn row_scale(row: u32) -> f32 {
    if (REDUCTION == REDUCTION_NONE) {
        if (HAS_UPSTREAM) {
            return scale[row];
        }
        return 1.0;
    }
    if (REDUCTION == REDUCTION_MEAN) {
        if (TARGET_KIND == TARGETS_PROBABILITIES) {
            return 1.0 / f32(params.total_rows);
        }
        // An all-ignored batch has total 0: every row is ignored and gets gradient 0, so
        // this value is never used.
        return 1.0 / max(scale[0], 1.17549435e-38);
    }
    return 1.0;
}

fn row_context(row: u32, lane: LaneStats) -> RowContext {
    var target_class = 0;
    var q_coefficient = lane.target_mass;
    let e = params.label_smoothing;
    if (TARGET_KIND != TARGETS_PROBABILITIES) {
        target_class = class_target(row);
        let total_weight = select(f32(params.cols), lane.target_mass, HAS_WEIGHT);
        var w_y = 0.0;
        if (target_class >= 0) {
            w_y = class_weight(u32(target_class));
        }
        q_coefficient = (1.0 - e) * w_y + (e / f32(params.cols)) * total_weight;
    }
    let undefined = row_is_undefined(lane.stats) || target_class == TARGET_INVALID;
    return RowContext(
        row,
        target_class,
        log(lane.stats.sum),
        lane.stats.max,
        q_coefficient,
        row_scale(row),
        undefined,
    );
}

fn write_gradient(index: u32, value: f32) {
    if (GRADIENT == GRADIENT_IN_PLACE) {
        logits[index] = value;
    } else {
        grad[index] = value;
    }
}

// The second pass over one invocation's share of a row: writes the gradient and returns
// the share's part of the summed loss term (class indices: sum of w_c * -logp_c, only
// with smoothing; probabilities: sum of w_c * p'_c * -logp_c). A masked logit (-inf) with
// a positive coefficient makes that sum +inf.
fn second_pass(ctx: RowContext, first: u32, stride: u32) -> f32 {
    let row_start = ctx.row * params.cols;
    let e = params.label_smoothing;
    let smoothing_share = e / f32(params.cols);
    let needs_sum = TARGET_KIND == TARGETS_PROBABILITIES || params.label_smoothing > 0.0;
    if (GRADIENT == GRADIENT_NONE && !needs_sum) {
        // The loss alone, over class targets without smoothing: the first pass saw all
        // this needs.
        return 0.0;
    }
    let ignored = TARGET_KIND != TARGETS_PROBABILITIES && ctx.target_class == TARGET_IGNORED;
    var loss_sum = 0.0;
    var hit_mask = false;
    for (var c = first; c < params.cols; c += stride) {
        let index = row_start + c;
        let x = logits[index];
        let masked = is_negative_infinity(x);
        // Coefficient of -logp_c in the summed term, and the gradient's target term.
        var coefficient = 0.0;
        var target_term = 0.0;
        if (TARGET_KIND == TARGETS_PROBABILITIES) {
            coefficient = class_weight(c) * smoothed_probability(index);
            target_term = coefficient;
        } else {
            coefficient = class_weight(c);
            target_term = smoothing_share * coefficient;
            if (i32(c) == ctx.target_class) {
                target_term += (1.0 - e) * coefficient;
            }
        }
        if (needs_sum && coefficient != 0.0) {
            if (masked) {
                hit_mask = true;
            } else {
                loss_sum += coefficient * ((ctx.row_max - x) + ctx.log_sum);
            }
        }
        if (GRADIENT != GRADIENT_NONE) {
            var g = 0.0;
            if (ctx.undefined && !ignored) {
                g = quiet_nan();
            } else if (!ignored) {
                var q = 0.0;
                if (!masked) {
                    // exp(x - m) / s as one exponential, without a division.
                    q = exp((x - ctx.row_max) - ctx.log_sum);
                }
                g = ctx.scale * (q * ctx.q_coefficient - target_term);
            }
            write_gradient(index, g);
        }
    }
    if (hit_mask) {
        return positive_infinity();
    }
    return loss_sum;
}

// The row's loss from its context and the summed term of the second pass; records a bad
// target and the argmax.
fn finish_row(ctx: RowContext, loss_sum: f32, best: Best) {
    var loss = 0.0;
    if (TARGET_KIND == TARGETS_PROBABILITIES) {
        loss = loss_sum;
        if (ctx.undefined) {
            loss = quiet_nan();
        }
    } else if (ctx.target_class == TARGET_INVALID) {
        loss = quiet_nan();
        atomicAdd(&status[STATUS_BAD_ROWS], 1u);
        atomicMax(&status[STATUS_FIRST_BAD_ROW], 0xffffffffu - (params.first_row + ctx.row));
    } else if (ctx.target_class != TARGET_IGNORED) {
        if (ctx.undefined) {
            loss = quiet_nan();
        } else {
            let e = params.label_smoothing;
            // -logp_y, +inf when the target's logit is masked.
            var distance = positive_infinity();
            if (!is_negative_infinity(saved_target_logit)) {
                distance = (ctx.row_max - saved_target_logit) + ctx.log_sum;
            }
            loss = (1.0 - e) * (class_weight(u32(ctx.target_class)) * distance);
            if (e > 0.0) {
                loss += (e / f32(params.cols)) * loss_sum;
            }
        }
    }
    row_loss[ctx.row] = loss;
    if (ARGMAX) {
        argmax[ctx.row] = best.index;
        if (TARGET_KIND != TARGETS_PROBABILITIES && ctx.target_class >= 0 && best.index == u32(ctx.target_class)) {
            atomicAdd(&status[STATUS_CORRECT], 1u);
        }
    }
}

// The target's logit, read before the second pass: with the gradient written in place,
// the logits are gone by the time the row's loss is computed.
var<private> saved_target_logit: f32;

fn save_target_logit(row: u32) {
    if (TARGET_KIND != TARGETS_PROBABILITIES) {
        let target_class = class_target(row);
        if (target_class >= 0) {
            saved_target_logit = logits[row * params.cols + u32(target_class)];
        }
    }
}

// Strategy: one invocation per row.
@compute @workgroup_size(THREAD_PER_ROW_GROUP_SIZE)
fn cross_entropy_thread_per_row(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let row = flat_group_index(group) * THREAD_PER_ROW_GROUP_SIZE + local;
    if (row >= params.rows) {
        return;
    }
    save_target_logit(row);
    let lane = first_pass(row, 0u, 1u);
    let ctx = row_context(row, lane);
    let loss_sum = second_pass(ctx, 0u, 1u);
    finish_row(ctx, loss_sum, lane.best);
}

// Strategy: one workgroup per row, shared-memory trees for both passes.
var<workgroup> partial_lanes: array<LaneStats, WORKGROUP_PER_ROW_GROUP_SIZE>;
var<workgroup> partial_losses: array<f32, WORKGROUP_PER_ROW_GROUP_SIZE>;

@compute @workgroup_size(WORKGROUP_PER_ROW_GROUP_SIZE)
fn cross_entropy_workgroup_per_row(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // The same row for the whole workgroup: the barriers stay in uniform control flow.
    let row = flat_group_index(group);
    if (row >= params.rows) {
        return;
    }
    if (local == 0u) {
        // Before the first barrier: no invocation writes a gradient until after it.
        save_target_logit(row);
    }
    partial_lanes[local] = first_pass(row, local, WORKGROUP_PER_ROW_GROUP_SIZE);
    workgroupBarrier();
    for (var width = WORKGROUP_PER_ROW_GROUP_SIZE / 2u; width > 0u; width /= 2u) {
        if (local < width) {
            partial_lanes[local] = lane_stats_merge(partial_lanes[local], partial_lanes[local + width]);
        }
        workgroupBarrier();
    }
    let lane = partial_lanes[0];
    let ctx = row_context(row, lane);
    partial_losses[local] = second_pass(ctx, local, WORKGROUP_PER_ROW_GROUP_SIZE);
    workgroupBarrier();
    for (var width = WORKGROUP_PER_ROW_GROUP_SIZE / 2u; width > 0u; width /= 2u) {
        if (local < width) {
            partial_losses[local] += partial_losses[local + width];
        }
        workgroupBarrier();
    }
    if (local == 0u) {
        finish_row(ctx, partial_losses[0], lane.best);
    }
}
