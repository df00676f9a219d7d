// Elements of TENSOR stored as 16-bit halves packed in 32-bit words, PER_WORD to a word
// (see `elem/words.wgsl`: element e is `word_element(word e / PER_WORD, e % PER_WORD)`).
// `half_to_f32` and `f32_to_half` (bf16 or f16) convert one half. Arithmetic is in f32; a
// value is rounded once, when stored. With VECTOR the binding is an array of vec4<u32>:
// 4 * PER_WORD elements to a 128-bit access.
// With STRIDED a packet is PACKET places of a row along a strided class axis, gathered
// from where they lie and scattered back (`strided_place`); an output is then an array of
// atomic words (see `TENSOR_store_element`), except with PAIRED, where an invocation
// writes each word whole (`TENSOR_store_pair`).

#if STRIDED
fn TENSOR_word(w: u32) -> u32 {
#if WRITABLE
#if PAIRED
    return TENSOR[w];
#else
    return atomicLoad(&TENSOR[w]);
#endif
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
    for (var a = 0u; a < PACKET / (4u * PER_WORD); a++) {
        let v = TENSOR[k * (PACKET / (4u * PER_WORD)) + a];
        for (var i = 0u; i < 4u; i++) {
            for (var j = 0u; j < PER_WORD; j++) {
                out[(4u * a + i) * PER_WORD + j] = half_to_f32(word_element(v[i], j));
            }
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
    for (var w = 0u; w < PACKET / PER_WORD; w++) {
        let word = TENSOR[k * (PACKET / PER_WORD) + w];
        for (var j = 0u; j < PER_WORD; j++) {
            out[w * PER_WORD + j] = half_to_f32(word_element(word, j));
        }
    }
    return out;
}
#endif
#endif

fn TENSOR_element(e: u32) -> f32 {
    return half_to_f32(word_element(TENSOR_word(e / PER_WORD), e % PER_WORD));
}

#if WRITABLE
#if STRIDED
#if PAIRED
// Packet k of two rows that share every word (rows 2j and 2j + 1 along an even `inner`):
// class c of the first is the low half of a word, the second's the high half, and this
// invocation alone writes the word.
fn TENSOR_store_pair(k: u32, first: array<f32, PACKET>, second: array<f32, PACKET>) {
    var a = first;
    var b = second;
    for (var j = 0u; j < PACKET; j++) {
        let place = strided_place(k * PACKET + j);
        if (place.inside) {
            let word = word_place(f32_to_half(a[j]), 0u) | word_place(f32_to_half(b[j]), 1u);
            TENSOR[place.index / PER_WORD] = word;
        }
    }
}
#else
// Along a strided class axis, the halves of a word belong to neighbouring rows, which
// other invocations write at any moment. Each stores its own half by clearing it and
// or-ing in its bits: two atomic operations that leave the other halves as they are,
// whatever order the rows' stores come in.
fn TENSOR_store_element(e: u32, x: f32) {
    let j = e % PER_WORD;
    atomicAnd(&TENSOR[e / PER_WORD], ~word_place(ELEMENT_MASK, j));
    atomicOr(&TENSOR[e / PER_WORD], word_place(f32_to_half(x), j));
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
#endif
#else
#if VECTOR
fn TENSOR_set_word(w: u32, bits: u32) {
    TENSOR[w / 4u][w % 4u] = bits;
}

fn TENSOR_store(k: u32, values: array<f32, PACKET>) {
    var v = values;
    for (var a = 0u; a < PACKET / (4u * PER_WORD); a++) {
        var words: vec4<u32>;
        for (var i = 0u; i < 4u; i++) {
            var bits = 0u;
            for (var j = 0u; j < PER_WORD; j++) {
                bits |= word_place(f32_to_half(v[(4u * a + i) * PER_WORD + j]), j);
            }
            words[i] = bits;
        }
        TENSOR[k * (PACKET / (4u * PER_WORD)) + a] = words;
    }
}
#else
fn TENSOR_set_word(w: u32, bits: u32) {
    TENSOR[w] = bits;
}

fn TENSOR_store(k: u32, values: array<f32, PACKET>) {
    var v = values;
    for (var w = 0u; w < PACKET / PER_WORD; w++) {
        var bits = 0u;
        for (var j = 0u; j < PER_WORD; j++) {
            bits |= word_place(f32_to_half(v[w * PER_WORD + j]), j);
        }
        TENSOR[k * (PACKET / PER_WORD) + w] = bits;
    }
}
#endif

// Stores the elements of packet k that belong to the row, for a packet shared with a
// neighbouring row. A word whose elements all belong to the row is written whole. A word
// the row shares with the row before or after it (or with what lies past the tensor) has
// no single writer: the row's elements of it, at their places in the word, go to `edges`
// ([2 row]: the word the row starts in; [2 row + 1]: the word it ends in), and the
// `fix_edges` pass writes each such word once every row is done. (A word never holds
// elements of three rows: the host runs this only where `WordFormat::edge_rule_holds`.)
fn TENSOR_store_part(k: u32, values: array<f32, PACKET>, span: RowSpan) {
    var v = values;
    for (var w = 0u; w < PACKET / PER_WORD; w++) {
        let first = k * PACKET + w * PER_WORD;
        var bits = 0u;
        var inside = 0u;
        for (var j = 0u; j < PER_WORD; j++) {
            if (in_row(span, first + j)) {
                bits |= word_place(f32_to_half(v[w * PER_WORD + j]), j);
                inside += 1u;
            }
        }
        if (inside == PER_WORD) {
            TENSOR_set_word(first / PER_WORD, bits);
        } else if (inside > 0u) {
            // The row's elements reach the word's last place: the row starts in it.
            let starts_here = in_row(span, first + PER_WORD - 1u);
            edge_store(2u * span.row + select(1u, 0u, starts_here), bits);
        }
    }
}
#endif
#endif
