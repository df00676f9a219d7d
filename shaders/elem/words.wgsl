// Elements of a 16-bit storage type packed into 32-bit words, as the host's `WordFormat`
// lays them out: element e of a tensor is element e % PER_WORD of word e / PER_WORD,
// (e % PER_WORD) * ELEMENT_BITS bits up. Every part that unpacks or packs words reads the
// layout from these constants, which the host generates.

// Element j of `word`, as its bits.
fn word_element(word: u32, j: u32) -> u32 {
    return (word >> (j * ELEMENT_BITS)) & ELEMENT_MASK;
}

// `bits` of one element, placed as element j of a word.
fn word_place(bits: u32, j: u32) -> u32 {
    return (bits & ELEMENT_MASK) << (j * ELEMENT_BITS);
}
