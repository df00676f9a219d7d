// Elements of TENSOR stored as 16-bit halves, two to a 32-bit word: element 2w in the low
// half of word w, element 2w + 1 in the high half. `half_to_f32` and `f32_to_half` (bf16
// or f16) convert one half. Arithmetic is in f32; a value is rounded once, when stored.
// With VECTOR the binding is an array of vec4<u32>: eight elements to a 128-bit access.
// With STRIDED a packet is PACKET places of a row along a strided class axis, gathered
// from where they lie and scattered back (`strided_place`); an output is then an array of
// atomic words (see `TENSOR_store_element`).

#if STRIDED
fn TENSOR_word(w: u32) -> u32 {
#if WRITABLE
    return atomicLoad(&TENSOR[w]);
#else
    return TENSOR[w];
#endif
}

fn TENSOR_load(k: u32) -> array<f32, PACKET> {
    var out: array<f32, PACKET>;
    for (var j = 0u; j < PACKET; j++) {
        let place = strided_place(k * PACKET + j);
        if (place.inside) {
            out[j] = TENSOR_element(place.index);
        }
    }
    return out;
}
#else
#if VECTOR
fn TENSOR_word(w: u32) -> u32 {
    return TENSOR[w / 4u][w % 4u];
}

fn TENSOR_load(k: u32) -> array<f32, PACKET> {
    var out: array<f32, PACKET>;
    for (var a = 0u; a < PACKET / 8u; a++) {
        let v = TENSOR[k * (PACKET / 8u) + a];
        for (var i = 0u; i < 4u; i++) {
            out[8u * a + 2u * i] = half_to_f32(v[i] & 0xffffu);
            out[8u * a + 2u * i + 1u] = half_to_f32(v[i] >> 16u);
        }
    }
    return out;
}
#else
fn TENSOR_word(w: u32) -> u32 {
    return TENSOR[w];
}

fn TENSOR_load(k: u32) -> array<f32, PACKET> {
    var out: array<f32, PACKET>;
    for (var w = 0u; w < PACKET / 2u; w++) {
        let word = TENSOR[k * (PACKET / 2u) + w];
        out[2u * w] = half_to_f32(word & 0xffffu);
        out[2u * w + 1u] = half_to_f32(word >> 16u);
    }
    return out;
}
#endif
#endif

fn TENSOR_element(e: u32) -> f32 {
    let word = TENSOR_word(e / 2u);
    return half_to_f32(select(word & 0xffffu, word >> 16u, (e & 1u) == 1u));
}

#if WRITABLE
#if STRIDED
// Along a strided class axis, the two halves of a word belong to neighbouring rows, which
// other invocations write at any moment. Each stores its own half by clearing it and
// or-ing in its bits: two atomic operations that leave the other half as it is, whatever
// order the two rows' stores come in.
fn TENSOR_store_element(e: u32, x: f32) {
    let shift = (e & 1u) * 16u;
    atomicAnd(&TENSOR[e / 2u], ~(0xffffu << shift));
    atomicOr(&TENSOR[e / 2u], f32_to_half(x) << shift);
}

fn TENSOR_store(k: u32, values: array<f32, PACKET>) {
    var v = values;
    for (var j = 0u; j < PACKET; j++) {
        let place = strided_place(k * PACKET + j);
        if (place.inside) {
            TENSOR_store_element(place.index, v[j]);
        }
    }
}

// A strided row owns its packets whole (padded past its last class); the words it shares
// with its neighbours are stored half by half.
fn TENSOR_store_part(k: u32, values: array<f32, PACKET>, span: RowSpan) {
    TENSOR_store(k, values);
}
#else
#if VECTOR
fn TENSOR_set_word(w: u32, bits: u32) {
    TENSOR[w / 4u][w % 4u] = bits;
}

fn TENSOR_store(k: u32, values: array<f32, PACKET>) {
    var v = values;
    for (var a = 0u; a < PACKET / 8u; a++) {
        var words: vec4<u32>;
        for (var i = 0u; i < 4u; i++) {
            words[i] = f32_to_half(v[8u * a + 2u * i]) | (f32_to_half(v[8u * a + 2u * i + 1u]) << 16u);
        }
        TENSOR[k * (PACKET / 8u) + a] = words;
    }
}
#else
fn TENSOR_set_word(w: u32, bits: u32) {
    TENSOR[w] = bits;
}

fn TENSOR_store(k: u32, values: array<f32, PACKET>) {
    var v = values;
    for (var w = 0u; w < PACKET / 2u; w++) {
        TENSOR[k * (PACKET / 2u) + w] = f32_to_half(v[2u * w]) | (f32_to_half(v[2u * w + 1u]) << 16u);
    }
}
#endif

// Stores the elements of packet k that belong to the row, for a packet shared with a
// neighbouring row. A word whose two halves both belong to the row is written whole. A
// word shared with the next row (or with what lies past the tensor) has one owner per half
// and so no single writer: its half of this row goes to `edges` ([2 row]: the row's first
// element, when the row starts mid-word; [2 row + 1]: its last, when it ends mid-word),
// and the `fix_edges` pass writes the word after every row is done.
fn TENSOR_store_part(k: u32, values: array<f32, PACKET>, span: RowSpan) {
    var v = values;
    for (var i = 0u; i < PACKET / 2u; i++) {
        let low = k * PACKET + 2u * i;
        let low_inside = in_row(span, low);
        let high_inside = in_row(span, low + 1u);
        if (low_inside && high_inside) {
            TENSOR_set_word(low / 2u, f32_to_half(v[2u * i]) | (f32_to_half(v[2u * i + 1u]) << 16u));
        } else if (low_inside) {
            edges[2u * span.row + 1u] = f32_to_half(v[2u * i]);
        } else if (high_inside) {
            edges[2u * span.row] = f32_to_half(v[2u * i + 1u]);
        }
    }
}
#endif
#endif
