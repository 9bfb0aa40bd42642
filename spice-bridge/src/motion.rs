//! Motion before pixels (issue 11 item 1): a new picture for an area is compared with what the
//! surface (and so the client) already shows there, and split into
//!
//! - one vertical move: a band of rows equal to the current rows `dy` rows away (a scroll),
//!   which the client can do itself with a COPY_BITS, and
//! - the runs of rows that really changed, the only ones whose pixels are sent.
//!
//! Rows equal to the current ones at the same place are not sent at all. The Linux qxl KMS
//! driver only reports dirty rectangles, never a copy, so this is where a scroll is found.
//!
//! The search hashes every row of both pictures once (a row of 1920 pixels costs ~1 µs), then
//! votes for the shift with blocks of [`BLOCK_ROWS`] consecutive rows: single rows repeat too
//! often in text (blank rows, the rows of a horizontal stroke) to say where they came from, a
//! block much less; a block that occurs up to [`MAX_CANDIDATES`] times in the old picture votes
//! for each of its places. The band is then checked row by row with exact comparisons, so a
//! hash collision can cost bandwidth, never correctness.

use std::collections::HashMap;

/// Pictures smaller than this (pixels) are sent whole: the search would cost more than it saves.
pub const MIN_AREA: usize = 64 * 1024;
/// A moved band must have at least this many rows to be worth a COPY_BITS.
pub const MIN_BAND_ROWS: usize = 16;
/// Changed-row runs closer than this are merged (each draw costs a message and an image header).
pub const MERGE_GAP_ROWS: usize = 8;
/// At most this many changed runs are kept; beyond it they are merged into one span.
pub const MAX_RUNS: usize = 8;
/// Rows per voting block.
pub const BLOCK_ROWS: usize = 4;
/// A block found in more places than this in the old picture does not vote.
pub const MAX_CANDIDATES: usize = 4;

/// How a new picture of `height` rows relates to the current one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Motion {
    /// A band moved vertically: rows `band.0..band.1` of the new picture equal rows
    /// `band.0 + dy..band.1 + dy` of the current one.
    pub moved: Option<Moved>,
    /// Row ranges (`start..end`) of the new picture that must be sent as pixels.
    pub changed: Vec<(usize, usize)>,
}

/// A band of rows the client can copy from elsewhere on its surface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    /// first row of the band (in the new picture)
    pub top: usize,
    /// one past its last row
    pub bottom: usize,
    /// where its rows come from, relative: source row = row + dy (never 0)
    pub dy: isize,
}

fn hash_row(row: &[u32]) -> u64 {
    // FNV-1a over whole pixels, then a final mix: fast, and collisions are checked anyway
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &p in row {
        h ^= u64::from(p);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^ (h >> 29)
}

/// Compares `new` (`width` x `height`, rows packed) with `old(y)`, the current row `y` of the
/// same area. Returns `None` when the picture is too small to be worth it or when every row
/// changed without a move (send it whole).
pub fn analyse<'a>(
    new: &'a [u32],
    width: usize,
    height: usize,
    old: impl Fn(usize) -> &'a [u32],
) -> Option<Motion> {
    if width == 0 || height < MIN_BAND_ROWS || width * height < MIN_AREA {
        return None;
    }
    let new_row = |y: usize| &new[y * width..(y + 1) * width];
    let nh: Vec<u64> = (0..height).map(|y| hash_row(new_row(y))).collect();
    let oh: Vec<u64> = (0..height).map(|y| hash_row(old(y))).collect();
    let same = |y: usize| nh[y] == oh[y] && new_row(y) == old(y);

    // Vote for a shift with blocks of rows that changed in place, by where the same block is
    // in the old picture.
    let block = |hs: &[u64], y: usize| {
        hs[y..y + BLOCK_ROWS].iter().fold(0u64, |a, &h| {
            a.rotate_left(17) ^ h.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        })
    };
    let blocks = height + 1 - BLOCK_ROWS;
    let mut old_index: HashMap<u64, Vec<usize>> = HashMap::with_capacity(blocks);
    for y in 0..blocks {
        let places = old_index.entry(block(&oh, y)).or_default();
        if places.len() <= MAX_CANDIDATES {
            places.push(y);
        }
    }
    let mut votes: HashMap<isize, usize> = HashMap::new();
    for y in 0..blocks {
        if nh[y] == oh[y] {
            continue;
        }
        match old_index.get(&block(&nh, y)) {
            Some(places) if places.len() <= MAX_CANDIDATES => {
                for &oy in places {
                    *votes.entry(oy as isize - y as isize).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    let moved = votes
        .into_iter()
        .filter(|&(_, n)| n >= MIN_BAND_ROWS / 2)
        .max_by_key(|&(dy, n)| (n, std::cmp::Reverse(dy.unsigned_abs())))
        .and_then(|(dy, _)| longest_band(&nh, &oh, dy, |y| new_row(y), &old))
        .filter(|m| m.bottom - m.top >= MIN_BAND_ROWS);

    // Rows outside the band that differ from the current row at the same place.
    let in_band = |y: usize| moved.is_some_and(|m| (m.top..m.bottom).contains(&y));
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for y in 0..height {
        if in_band(y) || same(y) {
            continue;
        }
        match runs.last_mut() {
            Some(last) if y - last.1 < MERGE_GAP_ROWS && !(last.1..y).any(in_band) => {
                last.1 = y + 1
            }
            _ => runs.push((y, y + 1)),
        }
    }
    if runs.len() > MAX_RUNS {
        runs = merge_outside(&runs, moved);
    }
    if moved.is_none() && runs == [(0, height)] {
        return None;
    }
    Some(Motion {
        moved,
        changed: runs,
    })
}

/// The longest run of rows `y` with new row `y` equal to old row `y + dy`.
fn longest_band<'a>(
    nh: &[u64],
    oh: &[u64],
    dy: isize,
    new_row: impl Fn(usize) -> &'a [u32],
    old: &impl Fn(usize) -> &'a [u32],
) -> Option<Moved> {
    let height = nh.len() as isize;
    let (mut best, mut cur): (Option<(usize, usize)>, Option<usize>) = (None, None);
    for y in 0..=height {
        let src = y + dy;
        let ok = y < height
            && (0..height).contains(&src)
            && nh[y as usize] == oh[src as usize]
            && new_row(y as usize) == old(src as usize);
        match (ok, cur) {
            (true, None) => cur = Some(y as usize),
            (false, Some(start)) => {
                let end = y as usize;
                if best.is_none_or(|(a, b)| end - start > b - a) {
                    best = Some((start, end));
                }
                cur = None;
            }
            _ => {}
        }
    }
    best.map(|(top, bottom)| Moved { top, bottom, dy })
}

/// Too many runs: one span above the band and one below it.
fn merge_outside(runs: &[(usize, usize)], moved: Option<Moved>) -> Vec<(usize, usize)> {
    let split = moved.map_or(usize::MAX, |m| m.top);
    let mut out: Vec<(usize, usize)> = Vec::new();
    for part in [
        runs.iter().filter(|r| r.1 <= split).collect::<Vec<_>>(),
        runs.iter().filter(|r| r.0 >= split).collect::<Vec<_>>(),
    ] {
        if let (Some(first), Some(last)) = (part.first(), part.last()) {
            out.push((first.0, last.1));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A text page as terminals show it: 16-row lines, blank rows between them, each glyph
    /// row repeated three times (so single rows are far from unique), some blank lines.
    fn page(width: usize, height: usize, first_row: usize) -> Vec<u32> {
        let mut v = Vec::with_capacity(width * height);
        for y in 0..height {
            let (line, r) = ((first_row + y) / 16, (first_row + y) % 16);
            for x in 0..width {
                let blank = !(2..14).contains(&r) || line % 7 == 3;
                let h = (line as u32).wrapping_mul(2_654_435_761) ^ ((x as u32 / 8) * 40_503);
                let bit = (h.wrapping_mul(0x5bd1_e995)
                    >> ((r.saturating_sub(2) / 3) * 4 + (x & 7) / 2))
                    & 1;
                v.push(if blank || bit == 0 {
                    0x00ff_ffff
                } else {
                    0x0020_2020
                });
            }
        }
        v
    }

    fn rows<'a>(p: &'a [u32], w: usize) -> impl Fn(usize) -> &'a [u32] {
        move |y| &p[y * w..(y + 1) * w]
    }

    #[test]
    fn a_scroll_is_one_move_and_the_new_strip() {
        let (w, h) = (512, 400);
        let old = page(w, h, 0);
        let new = page(w, h, 30); // scrolled down by 30 lines
        let m = analyse(&new, w, h, rows(&old, w)).expect("motion");
        assert_eq!(
            m.moved,
            Some(Moved {
                top: 0,
                bottom: 370,
                dy: 30
            })
        );
        assert_eq!(m.changed, vec![(370, 400)]);
    }

    #[test]
    fn a_scroll_under_a_fixed_header_and_footer() {
        let (w, h) = (512, 400);
        let mut old = page(w, h, 0);
        let mut new = page(w, h, 12);
        for p in [&mut old, &mut new] {
            p[..w * 20].fill(0x00ff_0000); // header
            p[w * 380..].fill(0x0000_ff00); // status line
        }
        let m = analyse(&new, w, h, rows(&old, w)).expect("motion");
        let b = m.moved.expect("a move");
        assert_eq!((b.top, b.bottom, b.dy), (20, 368, 12));
        assert_eq!(m.changed, vec![(368, 380)], "only the new lines");
    }

    #[test]
    fn unchanged_rows_are_not_sent_and_a_new_picture_is_sent_whole() {
        let (w, h) = (512, 400);
        let old = page(w, h, 0);
        let mut new = old.clone();
        new[w * 100..w * 104].fill(7);
        let m = analyse(&new, w, h, rows(&old, w)).expect("motion");
        assert_eq!(m.moved, None);
        assert_eq!(m.changed, vec![(100, 104)]);
        assert_eq!(analyse(&old, w, h, rows(&old, w)).unwrap().changed, vec![]);
        let other: Vec<u32> = page(w, h, 1000).iter().map(|p| p ^ 0x0012_3456).collect();
        assert_eq!(analyse(&other, w, h, rows(&old, w)), None, "send it whole");
        assert_eq!(
            analyse(&new[..64 * 64], 64, 64, rows(&old, 64)),
            None,
            "too small"
        );
    }

    #[test]
    fn scrolling_up_finds_a_negative_shift() {
        let (w, h) = (300, 300);
        let old = page(w, h, 50);
        let new = page(w, h, 10);
        let b = analyse(&new, w, h, rows(&old, w)).unwrap().moved.unwrap();
        assert_eq!((b.top, b.bottom, b.dy), (40, 300, -40));
    }
}
