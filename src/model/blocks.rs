//! Block strings, as the official `parse_layer_string` reads them: `RxN` N
//! blocks at resolution R, `RdK` a block then avg-pool by K (encoder), `RmS` a
//! decoder block at R that first adds the upsampled state from resolution S.

use super::limits::MAX_BLOCKS;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerSpec {
    pub res: usize,
    /// Encoder: pool factor after the block (`RdK`). Decoder: unused.
    pub down: Option<usize>,
    /// Decoder: resolution whose state is upsampled and added first (`RmS`).
    pub mixin: Option<usize>,
}

fn number(s: &str, whole: &str, what: &str) -> Result<usize> {
    match s.trim().parse::<usize>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(Error::Input(format!(
            "block string item {whole:?}: {what} {s:?} is not a positive integer"
        ))),
    }
}

/// An error when `count` more blocks after `before` exceed [`MAX_BLOCKS`]:
/// checked before the blocks are made, so no count allocates past the limit.
fn check_block_count(item: &str, before: usize, count: usize) -> Result<()> {
    if count > MAX_BLOCKS - before.min(MAX_BLOCKS) {
        return Err(Error::Input(format!(
            "block string item {item:?} brings the blocks to {}: too many, the limit is {MAX_BLOCKS} blocks \
             in one string (the official models have at most 75)",
            before as u128 + count as u128
        )));
    }
    Ok(())
}

/// Parses a block string such as `32x11,32d2,16x6` or `1x1,4m1,4x2`.
pub fn parse_layer_string(s: &str) -> Result<Vec<LayerSpec>> {
    let mut layers = Vec::new();
    for item in s.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(Error::Input(format!("block string {s:?} has an empty item")));
        }
        if let Some((r, n)) = item.split_once('x') {
            let res = number(r, item, "resolution")?;
            let count = number(n, item, "count")?;
            check_block_count(item, layers.len(), count)?;
            layers.extend((0..count).map(|_| LayerSpec {
                res,
                down: None,
                mixin: None,
            }));
        } else if let Some((r, m)) = item.split_once('m') {
            let res = number(r, item, "resolution")?;
            let mixin = number(m, item, "mixin resolution")?;
            if res % mixin != 0 {
                return Err(Error::Input(format!(
                    "block string item {item:?}: {res} is not a multiple of the mixin resolution {mixin}"
                )));
            }
            check_block_count(item, layers.len(), 1)?;
            layers.push(LayerSpec {
                res,
                down: None,
                mixin: Some(mixin),
            });
        } else if let Some((r, d)) = item.split_once('d') {
            let res = number(r, item, "resolution")?;
            let down = number(d, item, "down rate")?;
            if res % down != 0 {
                return Err(Error::Input(format!(
                    "block string item {item:?}: {res} is not divisible by the down rate {down}"
                )));
            }
            check_block_count(item, layers.len(), 1)?;
            layers.push(LayerSpec {
                res,
                down: Some(down),
                mixin: None,
            });
        } else {
            check_block_count(item, layers.len(), 1)?;
            layers.push(LayerSpec {
                res: number(item, item, "resolution")?,
                down: None,
                mixin: None,
            });
        }
    }
    Ok(layers)
}

/// `custom_width_str` such as `512:32,256:64`: width per resolution, `width` elsewhere.
pub fn parse_width_settings(s: &str) -> Result<Vec<(usize, usize)>> {
    let mut map = Vec::new();
    if s.trim().is_empty() {
        return Ok(map);
    }
    for item in s.split(',') {
        let (r, w) = item
            .split_once(':')
            .ok_or_else(|| Error::Input(format!("custom_width_str item {item:?} is not RESOLUTION:WIDTH")))?;
        map.push((number(r, item, "resolution")?, number(w, item, "width")?));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_official_cifar10_strings() {
        let enc = parse_layer_string("32x11,32d2,16x6,16d2,8x6,8d2,4x3,4d4,1x3").unwrap();
        assert_eq!(enc.len(), 11 + 1 + 6 + 1 + 6 + 1 + 3 + 1 + 3);
        assert_eq!(
            enc[11],
            LayerSpec {
                res: 32,
                down: Some(2),
                mixin: None
            }
        );
        let dec = parse_layer_string("1x1,4m1,4x2,8m4,8x5,16m8,16x10,32m16,32x21").unwrap();
        assert_eq!(dec.len(), 1 + 1 + 2 + 1 + 5 + 1 + 10 + 1 + 21);
        assert_eq!(
            dec[1],
            LayerSpec {
                res: 4,
                down: None,
                mixin: Some(1)
            }
        );
    }

    #[test]
    fn rejects_malformed_items_with_the_item_named() {
        for bad in ["32x", "32xa", "", "32,,16", "5d2", "x3", "32x0"] {
            let err = parse_layer_string(bad).unwrap_err().to_string();
            assert!(err.contains("block string"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_count_over_the_limit_is_refused_before_the_blocks_are_made() {
        let err = parse_layer_string("32x99999999999").unwrap_err().to_string();
        assert!(
            err.contains("\"32x99999999999\" brings the blocks to 99999999999"),
            "{err}"
        );
        assert!(err.contains("the limit is 1000"), "{err}");
        assert_eq!(parse_layer_string("32x999,32d2").unwrap().len(), 1000);
        let err = parse_layer_string("32x999,32d2,16").unwrap_err().to_string();
        assert!(err.contains("\"16\" brings the blocks to 1001"), "{err}");
    }

    #[test]
    fn parses_custom_widths() {
        assert_eq!(
            parse_width_settings("512:32,256:64").unwrap(),
            vec![(512, 32), (256, 64)]
        );
        assert!(parse_width_settings("512-32").is_err());
    }
}
