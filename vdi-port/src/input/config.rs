//! The config-space items (virtio spec §5.8.4) for each kind of input device.

use super::abi::*;
use super::keymap;
use super::InputKind;

/// One answer to a (select, subsel) pair: at most 128 bytes.
pub(crate) struct ConfigTable {
    items: Vec<(u8, u8, Vec<u8>)>,
}

fn bitmap(codes: impl IntoIterator<Item = u16>) -> Vec<u8> {
    let mut bits = vec![0u8; CONFIG_UNION_SIZE];
    let mut len = 0usize;
    for code in codes {
        let byte = usize::from(code / 8);
        if let Some(b) = bits.get_mut(byte) {
            *b |= 1 << (code % 8);
            len = len.max(byte + 1);
        }
    }
    bits.truncate(len);
    bits
}

fn string(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.truncate(CONFIG_UNION_SIZE);
    v
}

fn abs_info(min: u32, max: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(20);
    for x in [min, max, 0, 0, 0] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

const BUTTONS: [u16; 5] = [BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_SIDE, BTN_EXTRA];

impl ConfigTable {
    pub(crate) fn new(kind: InputKind, name: &str, serial: &str) -> Self {
        let product: u16 = match kind {
            InputKind::Keyboard => 1,
            InputKind::Tablet => 2,
            InputKind::Mouse => 3,
        };
        let mut devids = Vec::with_capacity(8);
        for x in [BUS_VIRTUAL, 0, product, 1] {
            devids.extend_from_slice(&x.to_le_bytes());
        }
        let mut items = vec![
            (CFG_ID_NAME, 0, string(name)),
            (CFG_ID_SERIAL, 0, string(serial)),
            (CFG_ID_DEVIDS, 0, devids),
        ];
        match kind {
            InputKind::Keyboard => {
                let keys = keymap::mapped_scancodes().filter_map(keymap::set1_to_linux);
                items.push((CFG_EV_BITS, EV_KEY as u8, bitmap(keys)));
                items.push((CFG_EV_BITS, EV_REP as u8, bitmap([REP_DELAY, REP_PERIOD])));
                items.push((
                    CFG_EV_BITS,
                    EV_LED as u8,
                    bitmap([LED_NUML, LED_CAPSL, LED_SCROLLL]),
                ));
            }
            InputKind::Tablet => {
                items.push((CFG_EV_BITS, EV_KEY as u8, bitmap(BUTTONS)));
                items.push((CFG_EV_BITS, EV_REL as u8, bitmap([REL_HWHEEL, REL_WHEEL])));
                items.push((CFG_EV_BITS, EV_ABS as u8, bitmap([ABS_X, ABS_Y])));
                items.push((CFG_ABS_INFO, ABS_X as u8, abs_info(0, ABS_MAX_COORD)));
                items.push((CFG_ABS_INFO, ABS_Y as u8, abs_info(0, ABS_MAX_COORD)));
            }
            InputKind::Mouse => {
                items.push((CFG_EV_BITS, EV_KEY as u8, bitmap(BUTTONS)));
                items.push((
                    CFG_EV_BITS,
                    EV_REL as u8,
                    bitmap([REL_X, REL_Y, REL_HWHEEL, REL_WHEEL]),
                ));
            }
        }
        ConfigTable { items }
    }

    /// The item for (select, subsel); empty (size 0) when the device has none.
    pub(crate) fn item(&self, select: u8, subsel: u8) -> &[u8] {
        self.items
            .iter()
            .find(|(s, ss, _)| *s == select && *ss == subsel)
            .map(|(_, _, v)| v.as_slice())
            .unwrap_or(&[])
    }

    /// The whole 136-byte config image for the current selection.
    pub(crate) fn image(&self, select: u8, subsel: u8) -> [u8; CONFIG_SIZE] {
        let mut img = [0u8; CONFIG_SIZE];
        img[0] = select;
        img[1] = subsel;
        let item = self.item(select, subsel);
        // Items are built at most CONFIG_UNION_SIZE (128) bytes long, so the length fits a u8
        // and the copy fits the union.
        let n = item.len().min(CONFIG_UNION_SIZE);
        img[2] = n as u8;
        img[CONFIG_UNION_OFFSET..CONFIG_UNION_OFFSET + n].copy_from_slice(&item[..n]);
        img
    }
}
