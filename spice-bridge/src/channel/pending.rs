//! The display channel's queue of operations not yet sent, and what it drops: a draw that a
//! later draw in the queue paints over completely never reaches the client, as spice-server
//! drops a drawable from a client's pipe when a newer opaque one covers it. A client that lags
//! (a slow link, a busy machine) then gets the newest picture sooner and fewer bytes, and what
//! it shows in the end is the same.
//!
//! A queued draw `P` is dropped for a new draw `X` when
//!
//! * `X` is an opaque draw of one whole area (a copy or a fill, unclipped or clipped to exactly
//!   its destination, as the Linux qxl driver sends its dirty rectangles) on `P`'s surface;
//! * `P` writes only inside that area (a copy, fill, raster operation, COPY_BITS or surface
//!   copy to it);
//! * nothing between `P` and `X` reads the surface where `P` wrote (a COPY_BITS or surface
//!   copy from there) or creates, destroys or resets surfaces.
//!
//! Only the last [`SCAN`] queued operations are looked at for each new one.

use std::collections::VecDeque;

use crate::model::DisplayOp;
use crate::wire::types::Rect;

/// Queued operations looked at, newest first, for each new draw.
pub const SCAN: usize = 64;

/// The area `op` paints over completely on its surface, if it is an opaque draw of one area.
fn covers(op: &DisplayOp) -> Option<(u32, Rect)> {
    let whole = |dst: &Rect, clip: &[Rect]| clip.is_empty() || clip == [*dst];
    match op {
        DisplayOp::Copy {
            surface, dst, clip, ..
        } if whole(dst, clip) => Some((*surface, *dst)),
        DisplayOp::Fill {
            surface,
            rect,
            clip,
            ..
        } if whole(rect, clip) => Some((*surface, *rect)),
        _ => None,
    }
}

/// Where `op` writes (its surface and the bounding box of what it may change), for draws.
fn writes(op: &DisplayOp) -> Option<(u32, Rect)> {
    match op {
        DisplayOp::Copy { surface, dst, .. }
        | DisplayOp::CopySurface { surface, dst, .. }
        | DisplayOp::CopyBits { surface, dst, .. } => Some((*surface, *dst)),
        DisplayOp::Fill { surface, rect, .. } | DisplayOp::Rop { surface, rect, .. } => {
            Some((*surface, *rect))
        }
        _ => None,
    }
}

/// Whether `op` reads pixels of `surface` inside `area`, or changes which surfaces exist.
fn reads_or_resets(op: &DisplayOp, surface: u32, area: &Rect) -> bool {
    match op {
        DisplayOp::CopyBits {
            surface: s,
            src,
            dst,
            ..
        } => {
            let from = Rect::new(src.x, src.y, dst.width() as i32, dst.height() as i32);
            *s == surface && !from.intersect(area).is_empty()
        }
        DisplayOp::CopySurface {
            src_surface,
            src_area,
            ..
        } => *src_surface == surface && !src_area.intersect(area).is_empty(),
        // An invert reads what it inverts.
        DisplayOp::Rop {
            surface: s, rect, ..
        } => *s == surface && !rect.intersect(area).is_empty(),
        DisplayOp::SurfaceCreate { .. } | DisplayOp::SurfaceDestroy { .. } | DisplayOp::Reset => {
            true
        }
        _ => false,
    }
}

/// Appends `ops` to `pending`, dropping the queued draws each new one paints over. Returns
/// how many were dropped.
pub(crate) fn queue(
    pending: &mut VecDeque<DisplayOp>,
    ops: impl IntoIterator<Item = DisplayOp>,
) -> u64 {
    let mut dropped = 0;
    for op in ops {
        if let Some((surface, area)) = covers(&op) {
            dropped += drop_covered(pending, surface, &area);
        }
        pending.push_back(op);
    }
    dropped
}

/// Drops the queued draws inside `area` of `surface` that nothing after them reads.
fn drop_covered(pending: &mut VecDeque<DisplayOp>, surface: u32, area: &Rect) -> u64 {
    let n = pending.len();
    let start = n.saturating_sub(SCAN);
    // Walk back from the newest; `later` holds the indices kept after the one looked at, so a
    // draw is dropped only if none of them reads where it wrote.
    let mut drop = Vec::new();
    let mut later: Vec<usize> = Vec::new();
    for i in (start..n).rev() {
        let op = &pending[i];
        if matches!(
            op,
            DisplayOp::SurfaceCreate { .. } | DisplayOp::SurfaceDestroy { .. } | DisplayOp::Reset
        ) {
            break;
        }
        if let Some((s, w)) = writes(op) {
            let inside = s == surface && w.intersect(area) == w && !w.is_empty();
            if inside && !later.iter().any(|&j| reads_or_resets(&pending[j], s, &w)) {
                drop.push(i);
                continue;
            }
        }
        later.push(i);
    }
    for &i in &drop {
        // highest index first, so the others stay where they are
        pending.remove(i);
    }
    drop.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Image, Point};

    fn copy(dst: Rect) -> DisplayOp {
        let n = (dst.width() * dst.height()) as usize;
        DisplayOp::Copy {
            surface: 0,
            dst,
            image: Image::new(0, dst.width(), dst.height(), vec![7; n]).unwrap(),
            clip: Vec::new(),
        }
    }

    fn kinds(q: &VecDeque<DisplayOp>) -> Vec<String> {
        q.iter()
            .map(|o| match o {
                DisplayOp::Copy { dst, .. } => format!(
                    "copy {}x{}@{},{}",
                    dst.width(),
                    dst.height(),
                    dst.left,
                    dst.top
                ),
                DisplayOp::CopyBits { .. } => "copy_bits".into(),
                DisplayOp::Ping(id) => format!("ping {id}"),
                DisplayOp::Mark => "mark".into(),
                o => format!("{o:?}"),
            })
            .collect()
    }

    #[test]
    fn a_later_whole_frame_drops_the_queued_ones_under_it() {
        let full = Rect::new(0, 0, 100, 100);
        let mut q = VecDeque::new();
        let n = queue(
            &mut q,
            [
                copy(full),
                DisplayOp::Mark,
                DisplayOp::Ping(1),
                copy(Rect::new(10, 10, 5, 5)),
            ],
        );
        assert_eq!(n, 0);
        let n = queue(&mut q, [copy(full), DisplayOp::Mark]);
        assert_eq!(n, 2, "the older frame and the small copy");
        assert_eq!(kinds(&q), ["mark", "ping 1", "copy 100x100@0,0", "mark"]);
    }

    #[test]
    fn a_draw_something_later_reads_or_only_partly_covered_stays() {
        let mut q = VecDeque::new();
        // a scroll down by 20 rows: reads rows 40..80, writes 60..100
        let scroll = DisplayOp::CopyBits {
            surface: 0,
            src: Point { x: 0, y: 40 },
            dst: Rect::new(0, 60, 100, 40),
            clip: Vec::new(),
        };
        // the strip the scroll reads must reach the client before the scroll
        queue(&mut q, [copy(Rect::new(0, 50, 100, 10)), scroll.clone()]);
        assert_eq!(
            queue(&mut q, [copy(Rect::new(0, 0, 100, 60))]),
            0,
            "read by the scroll"
        );
        // once the scroll itself is painted over, nothing reads the strip
        let mut q = VecDeque::new();
        queue(
            &mut q,
            [
                copy(Rect::new(0, 50, 100, 10)),
                scroll,
                copy(Rect::new(0, 0, 10, 10)),
            ],
        );
        assert_eq!(queue(&mut q, [copy(Rect::new(0, 0, 100, 100))]), 3);
        assert_eq!(kinds(&q), ["copy 100x100@0,0"]);
        // partly covered, another surface, a clipped cover, a surface change in between
        let mut q = VecDeque::new();
        queue(&mut q, [copy(Rect::new(90, 90, 20, 20))]);
        assert_eq!(
            queue(&mut q, [copy(Rect::new(0, 0, 100, 100))]),
            0,
            "partly outside"
        );
        let mut other = copy(Rect::new(0, 0, 10, 10));
        if let DisplayOp::Copy { surface, .. } = &mut other {
            *surface = 1;
        }
        queue(&mut q, [other]);
        assert_eq!(
            queue(&mut q, [copy(Rect::new(0, 0, 100, 100))]),
            1,
            "only the surface-0 one"
        );
        let mut clipped = copy(Rect::new(0, 0, 100, 100));
        if let DisplayOp::Copy { clip, .. } = &mut clipped {
            *clip = vec![Rect::new(0, 0, 50, 50)];
        }
        assert_eq!(
            queue(&mut q, [clipped]),
            0,
            "a clipped draw covers only part"
        );
        queue(&mut q, [DisplayOp::SurfaceDestroy { id: 1 }]);
        assert_eq!(
            queue(&mut q, [copy(Rect::new(0, 0, 100, 100))]),
            0,
            "not across a surface change"
        );
    }
}
