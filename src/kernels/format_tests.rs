//! The storage format as one place: the 16-bit types' layout as the composed modules read
//! it, and an imaginary format of four 8-bit elements a word planned through the same
//! functions (packets and the edge rule; the split's segments in `plan`'s tests), with a
//! CPU twin of the row kernels' edge stores and the `fix_edges` pass checked against plain
//! packing. No 8-bit type ships; this shows that one would need no change to the planner
//! or the edge rule.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation)] // small test sizes
#![allow(clippy::needless_range_loop)] // words numbered as the WGSL numbers them

use super::{KernelSpec, VectorWidth, compose};
use crate::dtype::{DType, EDGE_WORDS_PER_ROW, WordFormat};
use crate::rng::SeededRng;

const EIGHT_BIT: WordFormat = WordFormat { bits: 8 };

/// Packs `values` (each `format.bits` wide) into words, as a tensor holds them.
fn packed(format: WordFormat, values: &[u32], words: usize) -> Vec<u32> {
    let per_word = format.per_word() as usize;
    let mut out = vec![0; words];
    for (e, &v) in values.iter().enumerate() {
        out[e / per_word] |= (v & format.mask()) << ((e % per_word) as u32 * format.bits);
    }
    out
}

/// The CPU twin of the row kernels' stores of a 16-bit output (`TENSOR_store_part` in
/// `elem/half.wgsl`) followed by `fix_edges` (`strategy/edges.wgsl`): `rows` rows of
/// `cols` values written into `tensor`, whose words past the last row keep their bits.
fn store_rows_with_edges(
    format: WordFormat,
    tensor: &mut [u32],
    values: &[u32],
    (rows, cols): (usize, usize),
) {
    let per_word = format.per_word() as usize;
    let mut edges = vec![0u32; EDGE_WORDS_PER_ROW as usize * rows];
    // Each row on its own, as its invocations store it: whole words, and its elements of
    // shared words at their places in `edges`.
    for row in 0..rows {
        let (start, end) = (row * cols, (row + 1) * cols);
        for word in start / per_word..end.div_ceil(per_word) {
            let first = word * per_word;
            let (mut bits, mut inside) = (0u32, 0usize);
            for j in 0..per_word {
                let e = first + j;
                if (start..end).contains(&e) {
                    bits |= (values[e] & format.mask()) << (j as u32 * format.bits);
                    inside += 1;
                }
            }
            if inside == per_word {
                tensor[word] = bits;
            } else if inside > 0 {
                let starts_here = (start..end).contains(&(first + per_word - 1));
                edges[2 * row + usize::from(!starts_here)] = bits;
            }
        }
    }
    // The edge pass: each shared word written once.
    for row in 0..rows {
        let end = (row + 1) * cols;
        let places = (end % per_word) as u32;
        if places == 0 {
            continue;
        }
        let word = end / per_word;
        let mine = (1u32 << (places * format.bits)) - 1;
        let rest = if row + 1 < rows { edges[2 * (row + 1)] } else { tensor[word] };
        tensor[word] = (edges[2 * row + 1] & mine) | (rest & !mine);
    }
}

fn check_edge_rule(format: WordFormat) {
    let mut rng = SeededRng::new(0xF0_4A7);
    let per_word = format.per_word() as usize;
    for cols in 1..=4 * per_word + 3 {
        if !format.edge_rule_holds(cols as u64) {
            // Three rows in a word: the host never runs the edge pass there.
            assert!(cols + 2 <= per_word, "{format:?} {cols}");
            continue;
        }
        for rows in [1, 2, 3, 7] {
            let len = rows * cols;
            let words = len.div_ceil(per_word) + 1;
            let values: Vec<u32> = (0..len).map(|_| rng.below(u64::from(format.mask()) + 1) as u32).collect();
            // What lies past the tensor (its last word's free places, the word after) is
            // someone else's and must survive.
            let beyond: Vec<u32> = (0..words).map(|_| rng.below(1 << 32) as u32).collect();
            let mut tensor = beyond.clone();
            store_rows_with_edges(format, &mut tensor, &values, (rows, cols));
            let expected = packed(format, &values, words);
            for (e, &v) in values.iter().enumerate() {
                let got = (tensor[e / per_word] >> ((e % per_word) as u32 * format.bits)) & format.mask();
                assert_eq!(got, v, "{format:?} {rows}x{cols}: element {e}");
            }
            let used = len.div_ceil(per_word);
            let tail_places = (len % per_word) as u32;
            if tail_places != 0 {
                let mine = (1u32 << (tail_places * format.bits)) - 1;
                assert_eq!(
                    tensor[used - 1] & !mine,
                    beyond[used - 1] & !mine,
                    "{format:?} {rows}x{cols}: tail"
                );
                assert_eq!(tensor[used - 1] & mine, expected[used - 1] & mine, "{format:?} {rows}x{cols}");
            }
            assert_eq!(tensor[used..], beyond[used..], "{format:?} {rows}x{cols}: past the tensor");
            // Rows of whole words share none: the edge pass is not needed.
            assert_eq!(format.rows_share_words(cols as u64), cols % per_word != 0);
        }
    }
}

#[test]
fn the_edge_rule_writes_every_element_once_for_two_and_four_elements_a_word() {
    check_edge_rule(DType::F16.format());
    check_edge_rule(EIGHT_BIT);
}

#[test]
fn an_eight_bit_format_plans_through_the_same_functions() {
    assert_eq!(EIGHT_BIT.per_word(), 4);
    assert_eq!(EIGHT_BIT.mask(), 0xff);
    assert_eq!([VectorWidth::Scalar, VectorWidth::Vec4].map(|v| EIGHT_BIT.packet(v.words())), [4, 16]);
    // Edges: rows of a whole number of words share none.
    assert!(!EIGHT_BIT.rows_share_words(128) && EIGHT_BIT.rows_share_words(130));
    assert!(EIGHT_BIT.edge_rule_holds(3) && !EIGHT_BIT.edge_rule_holds(2));
}

#[test]
fn the_composed_modules_read_the_format_of_their_storage_type() {
    for spec in KernelSpec::all() {
        let module = compose(spec).unwrap();
        for (name, value) in spec.dtype.format().wgsl_constants() {
            let line = format!("const {name}: u32 = {value};");
            assert!(module.source.contains(&line), "{}: {line}", spec.label());
        }
    }
}

#[test]
fn no_part_that_packs_words_spells_the_16_bit_layout_out_itself() {
    let parts = [
        ("elem/half.wgsl", include_str!("../../shaders/elem/half.wgsl")),
        ("strategy/edges.wgsl", include_str!("../../shaders/strategy/edges.wgsl")),
        ("ops/matmul_tile.wgsl", include_str!("../../shaders/ops/matmul_tile.wgsl")),
        ("ops/matmul.wgsl", include_str!("../../shaders/ops/matmul.wgsl")),
        ("ops/sample.wgsl: logit", sample_logit()),
    ];
    for (name, source) in parts {
        let code: String =
            source.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        for literal in ["0xffffu", ">> 16u", "<< 16u", "/ 2u", "% 2u", "& 1u", "8u * a"] {
            assert!(!code.contains(literal), "{name} spells out `{literal}`: read PER_WORD and its kin");
        }
    }
}

/// The sampler's `logit`, its one access to the logits' words (its Philox arithmetic has
/// 16-bit limbs of its own).
fn sample_logit() -> &'static str {
    let source = include_str!("../../shaders/ops/sample.wgsl");
    let start = source.find("fn logit(").unwrap();
    let end = start + source[start..].find("\n}\n").unwrap();
    &source[start..end]
}
