// The matmul module's passes (the block's sums are matmul_tile.wgsl's): the product
//
//     c = op(a) * op(b) (+ c, with ACCUMULATE) (+ bias[column], with HAS_BIAS),
//
// summed over the terms params.k_first .. params.k_end of each dot product (the host
// splits a long k into ranges, each added to the last with ACCUMULATE); or, split over k
// (params.slices > 1, where the product has too few blocks to fill a GPU), the partial
// products of params.slices slices of those terms side by side in c, and their sum in a
// fixed order (`sum_slices`); the column sums of an f32 matrix; and the rounding of f32
// values into 16-bit storage.

override ACCUMULATE: bool = false;

@compute @workgroup_size(WORKGROUP_SIZE)
fn matmul(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) group: vec3<u32>) {
    let dims = Dims(params.m, params.n, params.k);
    // Workgroup g computes block g % blocks over slice g / blocks of the terms, and writes
    // to the slice's m x n part of c (with one slice, all of c).
    let index = group.x + group.y * params.groups_x;
    let blocks = block_count(dims);
    let slice = index / blocks;
    let k_first = params.k_first + slice * params.slice_terms;
    let k_end = min(params.k_end, k_first + params.slice_terms);
    let block = block_of(index % blocks, dims);
    var sums = tile_sums(local, block, dims, k_first, k_end);
    let part = slice * params.m * params.n;
    for (var i = 0u; i < PER; i++) {
        let row = block.row0 + tile_row(local, i);
        for (var j = 0u; j < PER; j++) {
            let column = block.column0 + tile_column(local, j);
            if (row < params.m && column < params.n) {
                let at = row * params.n + column;
                var value = sum_at(&sums, i, j);
                if (HAS_BIAS) {
                    value += bias_value(column);
                }
                if (ACCUMULATE) {
                    value += c[at];
                }
                c[part + at] = value;
            }
        }
    }
}

// c[i] = the sum of the params.slices partial products a holds side by side (each m x n,
// f32), slice 0 first, so that every run adds them in one order (+ bias[column], with
// HAS_BIAS) (+ c[i], with ACCUMULATE).
@compute @workgroup_size(WORKGROUP_SIZE)
fn sum_slices(@builtin(global_invocation_id) id: vec3<u32>) {
    let at = id.x + id.y * params.groups_x * WORKGROUP_SIZE;
    let outputs = params.m * params.n;
    if (at >= outputs) {
        return;
    }
    var value = 0.0;
    for (var slice = 0u; slice < params.slices; slice++) {
        value += bitcast<f32>(a_word(slice * outputs + at));
    }
    if (HAS_BIAS) {
        value += bias_value(at % params.n);
    }
    if (ACCUMULATE) {
        value += c[at];
    }
    c[at] = value;
}

// c[column] (+)= the sum over the m rows of a (stored m x n, f32) of a[row, column], rows
// in order: the bias's gradient.
@compute @workgroup_size(WORKGROUP_SIZE)
fn column_sums(@builtin(global_invocation_id) id: vec3<u32>) {
    let column = id.x + id.y * params.groups_x * WORKGROUP_SIZE;
    if (column >= params.n) {
        return;
    }
    var sum = 0.0;
    for (var row = 0u; row < params.m; row++) {
        sum += bitcast<f32>(a_word(row * params.n + column));
    }
    if (ACCUMULATE) {
        sum += c[column];
    }
    c[column] = sum;
}

#if HALF
// Rounds the params.m f32 values of c into halves of the storage type, PER_WORD to a word
// of `packed`. The places of the last word past the m-th value keep their bits: they
// belong to whatever follows the tensor.
@compute @workgroup_size(WORKGROUP_SIZE)
fn pack_halves(@builtin(global_invocation_id) id: vec3<u32>) {
    let w = id.x + id.y * params.groups_x * WORKGROUP_SIZE;
    if (PER_WORD * w >= params.m) {
        return;
    }
    // Only the last word can hold places past the m-th value.
    var bits = 0u;
    if (PER_WORD * (w + 1u) > params.m) {
        bits = packed[w];
    }
    for (var j = 0u; j < PER_WORD; j++) {
        if (PER_WORD * w + j < params.m) {
            bits = (bits & ~word_place(ELEMENT_MASK, j)) | word_place(f32_to_half(c[PER_WORD * w + j]), j);
        }
    }
    packed[w] = bits;
}
#endif
