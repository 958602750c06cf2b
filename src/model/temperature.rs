//! Per-level temperatures from the command line: one value for every level,
//! or a list such as `0.9,0.9,0.8` or `1.0:16,0.8` (`t:n` repeats t over n
//! levels; the last value holds for every level left).

use super::levels::check_temperature;
use crate::error::{Error, Result};

/// A parsed `--temperature`: values with repeat counts (`None`: as many as are left).
#[derive(Clone, Debug, PartialEq)]
pub struct Temperatures(Vec<(f32, Option<usize>)>);

impl std::str::FromStr for Temperatures {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Temperatures, String> {
        let mut items = Vec::new();
        for item in s.split(',') {
            let (t, n) = match item.split_once(':') {
                Some((t, n)) => {
                    let n: usize = n
                        .trim()
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| format!("{item:?}: the repeat count must be a positive integer"))?;
                    (t, Some(n))
                }
                None => (item, None),
            };
            let t: f32 = t.trim().parse().map_err(|_| format!("{item:?}: not a number"))?;
            check_temperature(t).map_err(|e| e.to_string())?;
            items.push((t, n));
        }
        Ok(Temperatures(items))
    }
}

impl Temperatures {
    pub fn uniform(t: f32) -> Temperatures {
        Temperatures(vec![(t, None)])
    }

    /// One temperature per level, top first.
    pub fn per_level(&self, levels: usize) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(levels);
        let last = self.0.len() - 1;
        for (i, &(t, n)) in self.0.iter().enumerate() {
            let count = match n {
                Some(n) => n,
                None if i == last => levels.saturating_sub(out.len()).max(1),
                None => 1,
            };
            out.extend(std::iter::repeat_n(t, count));
        }
        if out.len() > levels {
            return Err(Error::Input(format!(
                "--temperature names {} levels; the model has {levels}",
                out.len()
            )));
        }
        if out.len() < levels {
            return Err(Error::Input(format!(
                "--temperature names {} of the model's {levels} levels; end the list with a value without a count to fill the rest",
                out.len()
            )));
        }
        Ok(out)
    }
}

impl std::fmt::Display for Temperatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let items: Vec<String> = self
            .0
            .iter()
            .map(|(t, n)| match n {
                Some(n) => format!("{t}:{n}"),
                None => t.to_string(),
            })
            .collect();
        write!(f, "{}", items.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(s: &str, n: usize) -> Result<Vec<f32>> {
        s.parse::<Temperatures>().unwrap().per_level(n)
    }

    #[test]
    fn one_value_holds_for_every_level() {
        assert_eq!(levels("0.8", 3).unwrap(), vec![0.8; 3]);
    }

    #[test]
    fn counts_then_the_rest() {
        assert_eq!(levels("1.0:2,0.5", 5).unwrap(), vec![1.0, 1.0, 0.5, 0.5, 0.5]);
        assert_eq!(levels("0.9,0.9,0.8", 3).unwrap(), vec![0.9, 0.9, 0.8]);
        assert_eq!(levels("0.9,0.7", 4).unwrap(), vec![0.9, 0.7, 0.7, 0.7]);
    }

    #[test]
    fn too_many_or_too_few_levels_are_errors() {
        assert!(levels("1.0:4", 3).is_err());
        assert!(levels("1.0:2", 3).is_err());
        assert!(levels("1,1,1,1", 3).is_err());
    }

    #[test]
    fn bad_values_are_errors() {
        for s in ["", "x", "-1", "1:0", "1:x", "nan"] {
            assert!(s.parse::<Temperatures>().is_err(), "{s}");
        }
    }
}
