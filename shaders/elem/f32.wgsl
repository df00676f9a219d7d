// Elements of TENSOR stored as f32, one to a 32-bit word. A packet is PACKET consecutive
// elements, packet k starting at element k * PACKET of the binding; with VECTOR the
// binding is an array of vec4 and a packet moves as 128-bit accesses. With STRIDED a
// packet is PACKET places of a row along a strided class axis, gathered from where they
// lie and scattered back (`strided_place`).

#if STRIDED
fn TENSOR_element(e: u32) -> f32 {
    return TENSOR[e];
}

fn TENSOR_load(k: u32) -> array<f32, PACKET> {
    var out: array<f32, PACKET>;
    for (var j = 0u; j < PACKET; j++) {
        let place = strided_place(k * PACKET + j);
        if (place.inside) {
            out[j] = TENSOR[place.index];
        }
    }
    return out;
}
#else
#if VECTOR
fn TENSOR_element(e: u32) -> f32 {
    return TENSOR[e / 4u][e % 4u];
}

fn TENSOR_load(k: u32) -> array<f32, PACKET> {
    var out: array<f32, PACKET>;
    for (var a = 0u; a < PACKET / 4u; a++) {
        let v = TENSOR[k * (PACKET / 4u) + a];
        for (var i = 0u; i < 4u; i++) {
            out[4u * a + i] = v[i];
        }
    }
    return out;
}
#else
fn TENSOR_element(e: u32) -> f32 {
    return TENSOR[e];
}

fn TENSOR_load(k: u32) -> array<f32, PACKET> {
    var out: array<f32, PACKET>;
    for (var j = 0u; j < PACKET; j++) {
        out[j] = TENSOR[k * PACKET + j];
    }
    return out;
}
#endif
#endif

#if WRITABLE
#if STRIDED
fn TENSOR_store(k: u32, values: array<f32, PACKET>) {
    var v = values;
    for (var j = 0u; j < PACKET; j++) {
        let place = strided_place(k * PACKET + j);
        if (place.inside) {
            TENSOR[place.index] = v[j];
        }
    }
}

// A strided row owns its packets whole (padded past its last class): nothing is shared.
fn TENSOR_store_part(k: u32, values: array<f32, PACKET>, span: RowSpan) {
    TENSOR_store(k, values);
}
#else
#if VECTOR
fn TENSOR_store(k: u32, values: array<f32, PACKET>) {
    var v = values;
    for (var a = 0u; a < PACKET / 4u; a++) {
        TENSOR[k * (PACKET / 4u) + a] = vec4<f32>(v[4u * a], v[4u * a + 1u], v[4u * a + 2u], v[4u * a + 3u]);
    }
}

fn TENSOR_store_element(e: u32, x: f32) {
    TENSOR[e / 4u][e % 4u] = x;
}
#else
fn TENSOR_store(k: u32, values: array<f32, PACKET>) {
    var v = values;
    for (var j = 0u; j < PACKET; j++) {
        TENSOR[k * PACKET + j] = v[j];
    }
}

fn TENSOR_store_element(e: u32, x: f32) {
    TENSOR[e] = x;
}
#endif

// Stores the elements of packet k that belong to the row, for a packet shared with a
// neighbouring row: element by element (each element is its own word, so two rows sharing
// a packet never write the same word).
fn TENSOR_store_part(k: u32, values: array<f32, PACKET>, span: RowSpan) {
    var v = values;
    for (var j = 0u; j < PACKET; j++) {
        let e = k * PACKET + j;
        if (in_row(span, e)) {
            TENSOR_store_element(e, v[j]);
        }
    }
}
#endif
#endif
