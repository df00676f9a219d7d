// A workgroup's block of a matrix product, in f32, for the modules built on it (the
// matmul's passes, the linear cross-entropy's forward):
//
//     c = op(a) * op(b) (+ bias[column], with HAS_BIAS)
//
// op(a) is m x k, op(b) is k x n and c is m x n, row-major. a is stored m x k row-major,
// or k x m with A_TRANSPOSED; b is stored k x n row-major, or n x k with B_TRANSPOSED.
// a, b and bias are 32-bit words: f32 bits, or with A_HALF / B_HALF (bias with B_HALF)
// 16-bit halves packed PER_WORD to a word (see `elem/words.wgsl`). With VECTOR, a and b
// are arrays of vec4<u32> and the slabs load 128 bits at a time (a GROUP of four f32 or
// 4 * PER_WORD halves along the stored rows); the host composes it only where each operand's
// stored rows are whole groups, so that a group never straddles two rows.
//
// A workgroup computes a TILE x TILE block of c: invocation (x, y) of its SIDE x SIDE
// grid owns PER x PER outputs, held in registers as PER rows of PER / 4 vec4s: rows
// 4 y + 4 SIDE g + e and columns 4 x + 4 SIDE g + e, for g < PER / 4 and e < 4 (see
// `tile_row`, `tile_column`). The block's k axis is walked DEPTH at a time: every
// invocation loads its share of the a and b slabs into workgroup memory, neighbours
// reading neighbouring words, then each output gathers DEPTH products from there, each
// term's four rows and four columns read as one vec4 apiece. Each term then costs an
// invocation PER / 2 vector reads for PER * PER multiply-adds. The sum over k runs in the
// same order for every output, every run.

// SIDE, PER and DEPTH come from the host, which sizes the grid by TILE.
const TILE: u32 = SIDE * PER;
const PER_LOAD: u32 = TILE * DEPTH / (SIDE * SIDE);
// Steps of DEPTH terms summed apart before they join a product's total.
const RUN_STEPS: u32 = 64u;

override A_HALF: bool = false;
override B_HALF: bool = false;
override A_TRANSPOSED: bool = false;
override B_TRANSPOSED: bool = true;
override HAS_BIAS: bool = false;

// The a and b slabs, one after the other, each DEPTH rows of TILE values along k: the
// block's rows of op(a) (columns of op(b)) at one term are TILE / 4 vec4s. Free for a
// module's own use once the sums are done (`staged`, `stage`).
var<workgroup> staging: array<vec4<f32>, 2u * TILE * DEPTH / 4u>;
const B_SLAB: u32 = TILE * DEPTH;
// Vec4s per slab row.
const QUADS: u32 = TILE / 4u;
// Vec4s of an invocation's outputs.
const PER_QUADS: u32 = PER * PER / 4u;

// The value at index i of the staging, as if it were an array of f32.
fn staged(i: u32) -> f32 {
    return staging[i / 4u][i % 4u];
}

fn stage(i: u32, value: f32) {
    staging[i / 4u][i % 4u] = value;
}

// Where invocation `local`'s i-th row (j-th column) of outputs lies in its block.
fn tile_row(local: u32, i: u32) -> u32 {
    return 4u * (local / SIDE) + 4u * SIDE * (i / 4u) + i % 4u;
}

fn tile_column(local: u32, j: u32) -> u32 {
    return 4u * (local % SIDE) + 4u * SIDE * (j / 4u) + j % 4u;
}

// Output (i, j) of an invocation's sums.
fn sum_at(sums: ptr<function, array<vec4<f32>, PER_QUADS>>, i: u32, j: u32) -> f32 {
    return (*sums)[i * (PER / 4u) + j / 4u][j % 4u];
}

// The sizes of a product: op(a) is m x k, op(b) k x n.
struct Dims {
    m: u32,
    n: u32,
    k: u32,
}

fn word_value(word: u32, index: u32, halves: bool) -> f32 {
#if HALF
    if (halves) {
        return half_to_f32(word_element(word, index % PER_WORD));
    }
#endif
    return bitcast<f32>(word);
}

fn word_index(index: u32, halves: bool) -> u32 {
    return select(index, index / PER_WORD, halves);
}

#if VECTOR
fn a_word(w: u32) -> u32 {
    return a[w / 4u][w % 4u];
}

fn b_word(w: u32) -> u32 {
    return b[w / 4u][w % 4u];
}
#else
fn a_word(w: u32) -> u32 {
    return a[w];
}

fn b_word(w: u32) -> u32 {
    return b[w];
}
#endif

fn a_value(index: u32) -> f32 {
    return word_value(a_word(word_index(index, A_HALF)), index, A_HALF);
}

fn b_value(index: u32) -> f32 {
    return word_value(b_word(word_index(index, B_HALF)), index, B_HALF);
}

fn bias_value(column: u32) -> f32 {
    return word_value(bias[word_index(column, B_HALF)], column, B_HALF);
}

// Element e of a slab load: its place along the block's rows (or columns) and along k,
// ordered so that neighbouring invocations read neighbouring elements of the stored
// matrix (along k when k is the stored rows' contiguous axis, else along the block).
struct SlabPlace {
    across: u32,
    along_k: u32,
}

fn slab_place(e: u32, k_contiguous: bool) -> SlabPlace {
    if (k_contiguous) {
        return SlabPlace(e / DEPTH, e % DEPTH);
    }
    return SlabPlace(e % TILE, e / TILE);
}

#if VECTOR
// Elements in one vector of an operand: four f32, or 4 * PER_WORD halves.
fn group_size(halves: bool) -> u32 {
    return select(4u, 4u * PER_WORD, halves);
}

// The elements of a vector of words, in order (the first four alone for f32).
fn unpack_group(words: vec4<u32>, halves: bool) -> array<f32, 4u * PER_WORD> {
    var out: array<f32, 4u * PER_WORD>;
    for (var i = 0u; i < 4u; i++) {
#if HALF
        if (halves) {
            for (var j = 0u; j < PER_WORD; j++) {
                out[i * PER_WORD + j] = half_to_f32(word_element(words[i], j));
            }
            continue;
        }
#endif
        out[i] = bitcast<f32>(words[i]);
    }
    return out;
}

// Group g of a slab load, for groups of `size` elements along the stored rows: where its
// first element sits across the block and along k, and which way the rest follow.
struct GroupPlace {
    across: u32,
    along_k: u32,
    // The group runs along k (else across the block).
    along_k_axis: bool,
}

fn group_place(g: u32, size: u32, k_contiguous: bool) -> GroupPlace {
    if (k_contiguous) {
        return GroupPlace(g / (DEPTH / size), (g % (DEPTH / size)) * size, true);
    }
    return GroupPlace((g % (TILE / size)) * size, g / (TILE / size), false);
}

fn slab_index(place: GroupPlace, i: u32) -> u32 {
    if (place.along_k_axis) {
        return (place.along_k + i) * TILE + place.across;
    }
    return place.along_k * TILE + place.across + i;
}

// As the scalar load_slabs below, a vector at a time. A group lies wholly inside or
// wholly outside its matrix: rows are whole groups and blocks start on group bounds.
fn load_slabs(local: u32, row0: u32, column0: u32, k0: u32, dims: Dims) {
    let a_size = group_size(A_HALF);
    for (var g = local; g < TILE * DEPTH / a_size; g += SIDE * SIDE) {
        let place = group_place(g, a_size, !A_TRANSPOSED);
        let row = row0 + place.across;
        let ka = k0 + place.along_k;
        var values: array<f32, 4u * PER_WORD>;
        if (row < dims.m && ka < dims.k) {
            let first = select(row * dims.k + ka, ka * dims.m + row, A_TRANSPOSED);
            values = unpack_group(a[first / a_size], A_HALF);
        } else {
            values = array<f32, 4u * PER_WORD>();
        }
        for (var i = 0u; i < a_size; i++) {
            stage(slab_index(place, i), values[i]);
        }
    }
    let b_size = group_size(B_HALF);
    for (var g = local; g < TILE * DEPTH / b_size; g += SIDE * SIDE) {
        let place = group_place(g, b_size, B_TRANSPOSED);
        let column = column0 + place.across;
        let kb = k0 + place.along_k;
        var values: array<f32, 4u * PER_WORD>;
        if (column < dims.n && kb < dims.k) {
            let first = select(kb * dims.n + column, column * dims.k + kb, B_TRANSPOSED);
            values = unpack_group(b[first / b_size], B_HALF);
        } else {
            values = array<f32, 4u * PER_WORD>();
        }
        for (var i = 0u; i < b_size; i++) {
            stage(B_SLAB + slab_index(place, i), values[i]);
        }
    }
}
#else
// Stages a[block rows, k0 .. k0 + DEPTH] and b[k0 .. k0 + DEPTH, block columns], zero
// past the matrices' edges.
fn load_slabs(local: u32, row0: u32, column0: u32, k0: u32, dims: Dims) {
    for (var l = 0u; l < PER_LOAD; l++) {
        let e = local + l * SIDE * SIDE;
        let pa = slab_place(e, !A_TRANSPOSED);
        let row = row0 + pa.across;
        let ka = k0 + pa.along_k;
        var va = 0.0;
        if (row < dims.m && ka < dims.k) {
            va = a_value(select(row * dims.k + ka, ka * dims.m + row, A_TRANSPOSED));
        }
        stage(pa.along_k * TILE + pa.across, va);

        let pb = slab_place(e, B_TRANSPOSED);
        let column = column0 + pb.across;
        let kb = k0 + pb.along_k;
        var vb = 0.0;
        if (column < dims.n && kb < dims.k) {
            vb = b_value(select(kb * dims.n + column, column * dims.k + kb, B_TRANSPOSED));
        }
        stage(B_SLAB + pb.along_k * TILE + pb.across, vb);
    }
}
#endif

// Where a workgroup's TILE x TILE block of c starts, blocks numbered down each column of
// blocks first: the workgroups that run together share their slab of b (W, for the
// logits of a window), which so stays in cache while they sweep the rows.
struct Block {
    row0: u32,
    column0: u32,
}

// Blocks of the product: TILE x TILE blocks of c, the last of each row and column partial.
fn block_count(dims: Dims) -> u32 {
    return ((dims.m + TILE - 1u) / TILE) * ((dims.n + TILE - 1u) / TILE);
}

fn block_of(index: u32, dims: Dims) -> Block {
    let down = (dims.m + TILE - 1u) / TILE;
    return Block((index % down) * TILE, (index / down) * TILE);
}

// Invocation `local`'s PER x PER sums of the block over the terms k_first .. k_end (a
// multiple of DEPTH, or dims.k): sum (i, j) (`sum_at`) is row block.row0 +
// tile_row(local, i) and column block.column0 + tile_column(local, j). A product over
// many terms (k = V for dH = G W) is summed a range of terms per dispatch, so that no
// invocation runs more loop iterations than a driver allows (llvmpipe stops them
// silently after 65535). Call in uniform control flow: every invocation takes part in
// the barriers (those of a block past the last load zeros), and the staging is free
// again on return.
fn tile_sums(local: u32, block: Block, dims: Dims, k_first: u32, k_end: u32) -> array<vec4<f32>, PER_QUADS> {
    let x = local % SIDE;
    let y = local / SIDE;
    // Three levels of f32 sums, so that the rounding error grows with the number of
    // partial sums (about 100 over a dispatch) rather than with k: each step's DEPTH
    // products, runs of RUN_STEPS steps, and the total.
    var sums: array<vec4<f32>, PER_QUADS>;
    var run: array<vec4<f32>, PER_QUADS>;
    var steps = 0u;
    for (var k0 = k_first; k0 < k_end; k0 += DEPTH) {
        load_slabs(local, block.row0, block.column0, k0, dims);
        workgroupBarrier();
        // Zeroed explicitly at every step: Chromium (Tint, on SwiftShader) kept the last
        // step's sums in a variable declared in a loop without an initializer, where WGSL
        // (and naga) make it zero each time the declaration runs.
        var step = array<vec4<f32>, PER_QUADS>();
        for (var kk = 0u; kk < DEPTH; kk++) {
            // The term's values at the invocation's rows and columns, four to a vec4.
            var a_rows: array<vec4<f32>, PER / 4u>;
            var b_columns: array<vec4<f32>, PER / 4u>;
            for (var g = 0u; g < PER / 4u; g++) {
                a_rows[g] = staging[kk * QUADS + y + SIDE * g];
                b_columns[g] = staging[B_SLAB / 4u + kk * QUADS + x + SIDE * g];
            }
            for (var i = 0u; i < PER; i++) {
                let a = a_rows[i / 4u][i % 4u];
                for (var g = 0u; g < PER / 4u; g++) {
                    let at = i * (PER / 4u) + g;
                    step[at] = fma(vec4(a), b_columns[g], step[at]);
                }
            }
        }
        for (var q = 0u; q < PER_QUADS; q++) {
            run[q] += step[q];
        }
        // The step's sums are in run before the barrier: fewer values live across it.
        workgroupBarrier();
        steps += 1u;
        if (steps == RUN_STEPS) {
            for (var q = 0u; q < PER_QUADS; q++) {
                sums[q] += run[q];
                run[q] = vec4(0.0);
            }
            steps = 0u;
        }
    }
    for (var q = 0u; q < PER_QUADS; q++) {
        sums[q] += run[q];
    }
    return sums;
}
