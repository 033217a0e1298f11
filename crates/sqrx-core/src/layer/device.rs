//! Device numbers as squashfs stores them: one 32-bit word, encoded the way the kernel's
//! `new_encode_dev` does. Character device 0/0 is overlayfs's whiteout.

/// Encode a device number the way squashfs stores it (the kernel's `new_encode_dev`).
pub(crate) fn squashfs_dev(major: u64, minor: u64) -> u32 {
    let (major, minor) = (major as u32, minor as u32);
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// Split a squashfs device number into (major, minor) (the kernel's `new_decode_dev`): the
/// inverse of [`squashfs_dev`], which the test checks it against.
#[cfg(test)]
fn squashfs_dev_parts(dev: u32) -> (u32, u32) {
    ((dev & 0xfff00) >> 8, (dev & 0xff) | ((dev >> 12) & 0xfff00))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_round_trip() {
        for (major, minor) in [(0, 0), (1, 3), (8, 17), (259, 1048575), (4095, 300)] {
            let dev = squashfs_dev(major, minor);
            assert_eq!(squashfs_dev_parts(dev), (major as u32, minor as u32));
        }
        assert_eq!(squashfs_dev(1, 3), 0x103);
    }
}
