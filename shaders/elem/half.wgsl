// Elements of TENSOR stored as 16-bit halves, two to a 32-bit word: element 2w in the low
// half of word w, element 2w + 1 in the high half. `half_to_f32` and `f32_to_half` (bf16
// or f16) convert one half. Arithmetic is in f32; a value is rounded once, when stored.
// With VECTOR the binding is an array of vec4<u32>: eight elements to a 128-bit access.

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

fn TENSOR_element(e: u32) -> f32 {
    let word = TENSOR_word(e / 2u);
    return half_to_f32(select(word & 0xffffu, word >> 16u, (e & 1u) == 1u));
}

#if WRITABLE
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
