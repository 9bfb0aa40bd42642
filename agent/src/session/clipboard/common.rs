//! What the X11 and the Wayland clipboard bridges share: the Spice types bridged, how a guest
//! owner's targets (X atoms, MIME types) map to them, the grab-serial rule, and the
//! conversions of data on the way in and out (text encodings, PNG ↔ BMP).

use std::sync::Arc;

use super::image::{self, ImageError};
use crate::protocol::{Caps, ClipboardType};

/// The Spice types the bridges map, in the order a GRAB lists them.
pub(super) const TYPES: [ClipboardType; 5] = [
    ClipboardType::Utf8Text,
    ClipboardType::ImagePng,
    ClipboardType::ImageBmp,
    ClipboardType::ImageTiff,
    ClipboardType::ImageJpg,
];

/// One type a guest owner offers: the target (X atom, MIME type) to read, and whether it is
/// BMP standing in for PNG (converted on the way to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Offered<T> {
    pub type_: ClipboardType,
    pub target: T,
    pub bmp_to_png: bool,
}

/// The Spice types a guest owner's `targets` map to, each with the target to read.
/// `for_type` lists the targets carrying a type, best first. An owner offering BMP but no PNG
/// is announced with PNG too (PNG is what Spice clients expect; the bridge converts).
pub(super) fn map_offer<T: Clone + PartialEq>(
    targets: &[T],
    for_type: impl Fn(ClipboardType) -> Vec<T>,
) -> Vec<Offered<T>> {
    let mut offer: Vec<Offered<T>> = TYPES
        .iter()
        .filter_map(|&type_| {
            let target = for_type(type_).into_iter().find(|t| targets.contains(t))?;
            Some(Offered {
                type_,
                target,
                bmp_to_png: false,
            })
        })
        .collect();
    let has = |o: &[Offered<T>], t| o.iter().any(|o| o.type_ == t);
    if !has(&offer, ClipboardType::ImagePng) {
        if let Some(bmp) = offer
            .iter()
            .find(|o| o.type_ == ClipboardType::ImageBmp)
            .cloned()
        {
            offer.insert(
                1.min(offer.len()),
                Offered {
                    type_: ClipboardType::ImagePng,
                    target: bmp.target,
                    bmp_to_png: true,
                },
            );
        }
    }
    offer
}

/// The grab-serial rule (reference §3.4): one counter per selection shared by both
/// directions. A client GRAB is taken when its serial equals the counter (which then
/// increments) or the counter − 1 (both sides grabbed at once: the client wins); a grab
/// without a serial (a client without CLIPBOARD_GRAB_SERIAL) is always taken.
pub(super) fn take_client_serial(counter: &mut u32, got: Option<u32>) -> bool {
    match got {
        None => true,
        Some(got) if got == *counter => {
            *counter = counter.wrapping_add(1);
            true
        }
        Some(got) => counter.checked_sub(1) == Some(got),
    }
}

/// Whether selection `i` (0 CLIPBOARD, 1 PRIMARY) is bridged with a client of `caps`.
pub(super) fn selection_enabled(caps: Option<&Caps>, i: usize) -> bool {
    use crate::protocol::cap;
    caps.is_some_and(|c| {
        c.has(cap::CLIPBOARD_BY_DEMAND) && (i == 0 || c.has(cap::CLIPBOARD_SELECTION))
    })
}

/// How the client's data become the bytes a guest application asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Conv {
    /// As the client sent them.
    AsIs,
    /// UTF-8 → ISO 8859-1 (X's `STRING`), other characters replaced by `?`.
    Latin1,
    /// The client's PNG as a BMP.
    PngToBmp,
    /// The client's BMP as a PNG (a client offering only BMP; guest applications expect PNG).
    BmpToPng,
}

/// Converts client data for a guest application; `max_bytes` bounds an image conversion.
pub(super) fn convert_for_guest(
    conv: Conv,
    data: &Arc<Vec<u8>>,
    max_bytes: usize,
) -> Result<Arc<Vec<u8>>, ImageError> {
    Ok(match conv {
        Conv::AsIs => Arc::clone(data),
        Conv::Latin1 => Arc::new(
            String::from_utf8_lossy(data)
                .chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                .collect(),
        ),
        Conv::PngToBmp => Arc::new(image::png_to_bmp(data, max_bytes)?),
        Conv::BmpToPng => Arc::new(image::bmp_to_png(data, max_bytes)?),
    })
}

/// Turns what a guest owner delivered into what the client gets, or `None` to refuse (logged).
/// Text becomes UTF-8 (`latin1`: the bytes are ISO 8859-1, as X's `STRING`; otherwise invalid
/// sequences are replaced); a BMP standing in for PNG is converted (bounded by `max_bytes`);
/// the result must fit `send_limit`.
pub(super) fn guest_data_for_client(
    type_: ClipboardType,
    bmp_to_png: bool,
    latin1: bool,
    bytes: Vec<u8>,
    max_bytes: usize,
    send_limit: usize,
) -> Option<Vec<u8>> {
    let data = if bmp_to_png {
        match image::bmp_to_png(&bytes, max_bytes) {
            Ok(png) => png,
            Err(e) => {
                tracing::warn!("clipboard: guest BMP not converted to PNG: {e}");
                return None;
            }
        }
    } else if type_ == ClipboardType::Utf8Text {
        if latin1 {
            // ISO 8859-1: each byte is the code point.
            bytes
                .iter()
                .map(|&b| char::from(b))
                .collect::<String>()
                .into_bytes()
        } else {
            match String::from_utf8(bytes) {
                Ok(s) => s.into_bytes(),
                Err(e) => String::from_utf8_lossy(e.as_bytes())
                    .into_owned()
                    .into_bytes(),
            }
        }
    } else {
        bytes
    };
    if data.len() > send_limit {
        tracing::warn!(
            "clipboard: {} bytes of guest {type_:?} exceed the limit {send_limit}; refused",
            data.len(),
        );
        return None;
    }
    Some(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_rule() {
        let mut c = 5;
        assert!(take_client_serial(&mut c, Some(5)));
        assert_eq!(c, 6);
        assert!(
            take_client_serial(&mut c, Some(5)),
            "counter − 1: both grabbed"
        );
        assert_eq!(c, 6);
        assert!(!take_client_serial(&mut c, Some(9)));
        assert!(!take_client_serial(&mut c, Some(4)));
        assert!(take_client_serial(&mut c, None));
        let mut z = 0;
        assert!(!take_client_serial(&mut z, Some(u32::MAX)));
    }

    #[test]
    fn bmp_only_offer_gets_png() {
        let f = |t| match t {
            ClipboardType::Utf8Text => vec!["text"],
            ClipboardType::ImageBmp => vec!["bmp"],
            _ => vec![],
        };
        let o = map_offer(&["bmp", "text"], f);
        let types: Vec<_> = o
            .iter()
            .map(|o| (o.type_, o.target, o.bmp_to_png))
            .collect();
        assert_eq!(
            types,
            [
                (ClipboardType::Utf8Text, "text", false),
                (ClipboardType::ImagePng, "bmp", true),
                (ClipboardType::ImageBmp, "bmp", false),
            ]
        );
    }

    #[test]
    fn text_conversions() {
        let latin = guest_data_for_client(
            ClipboardType::Utf8Text,
            false,
            true,
            vec![0x63, 0x61, 0x66, 0xe9],
            100,
            100,
        );
        assert_eq!(latin.as_deref(), Some("café".as_bytes()));
        let too_big = guest_data_for_client(
            ClipboardType::Utf8Text,
            false,
            false,
            vec![b'a'; 11],
            100,
            10,
        );
        assert_eq!(too_big, None);
        let out = convert_for_guest(Conv::Latin1, &Arc::new("café€".into()), 100).unwrap();
        assert_eq!(&out[..], &[0x63, 0x61, 0x66, 0xe9, b'?']);
    }
}
