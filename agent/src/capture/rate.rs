//! Frame rates as exact fractions: `25`, `30`, `30000/1001` (NTSC's "29.97").
//!
//! A rate is kept as a reduced fraction, never as a float: at 30000/1001 a
//! float frame duration drifts by whole frames over a day of recording, while
//! a fraction gives every frame's 90 kHz timestamp exactly.
//!
//! A rate is accepted when one frame lasts a whole number of 90 kHz ticks
//! (`90000 × den / num` is an integer): then frame `n` is at exactly
//! `n × ticks` after the first, every segment spans a whole number of frames,
//! and the verifier's frame count (`docs/FORMAT.md` §4 step 11) is exact.
//! That covers every integer rate dividing 90000 (25, 30, 50, 60, …) and
//! 30000/1001 (3003 ticks), 15000/1001 and 10000/1001; it refuses 24000/1001
//! (3753.75 ticks) and 60000/1001 (1501.5 ticks), which would need
//! timestamps rounded frame by frame.
//!
//! Written in the configuration as an integer (`fps = 25`), a fraction
//! (`fps = "30000/1001"`), or a decimal that names an NTSC rate to the digits
//! written (`fps = 29.97` or `"29.97"` is 30000/1001); a decimal that is no
//! NTSC rate is refused rather than rounded to some other rate.

use std::fmt;
use std::str::FromStr;

use fieldseal_proto::entry::PTS_HZ;

/// A video frame rate `num / den` frames per second, reduced, with a whole
/// number of 90 kHz ticks per frame and between 1 and 240 frames a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameRate {
    num: u32,
    den: u32,
}

/// A frame rate that does not parse or that the capture cannot keep exact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid frame rate {text:?}: {reason}")]
pub struct FrameRateError {
    /// The rate as given.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Highest rate accepted: body cameras run at 25 or 30, some at 50 or 60;
/// above this x264's level limits and the agent's CPU budget are long gone.
const MAX_FPS: u32 = 240;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl FrameRate {
    /// 30 frames a second, the capture's default.
    pub const DEFAULT: FrameRate = FrameRate { num: 30, den: 1 };

    /// NTSC's 30000/1001 ("29.97") frames a second.
    pub const NTSC: FrameRate = FrameRate {
        num: 30_000,
        den: 1001,
    };

    /// The rate `num / den`, reduced.
    ///
    /// # Errors
    /// A zero term, a rate outside 1..=240 frames a second, or a frame that
    /// does not last a whole number of 90 kHz ticks.
    pub fn new(num: u32, den: u32) -> Result<Self, FrameRateError> {
        let err = |reason| FrameRateError {
            text: format!("{num}/{den}"),
            reason,
        };
        if num == 0 || den == 0 {
            return Err(err("numerator and denominator must be at least 1"));
        }
        if num < den || u64::from(num) > u64::from(MAX_FPS) * u64::from(den) {
            return Err(err("must be between 1 and 240 frames a second"));
        }
        let g = gcd(u64::from(num), u64::from(den));
        let (n, d) = (u64::from(num) / g, u64::from(den) / g);
        if (PTS_HZ as u64 * d) % n != 0 {
            return Err(err(
                "a frame must last a whole number of 90 kHz ticks \
                 (25, 30, 50, 60 and 30000/1001 do; 24000/1001 and 60000/1001 do not)",
            ));
        }
        // Reduced terms are at most the given ones.
        Ok(FrameRate {
            num: u32::try_from(n).map_err(|_| err("too large"))?,
            den: u32::try_from(d).map_err(|_| err("too large"))?,
        })
    }

    /// The numerator of the reduced fraction.
    pub fn num(self) -> u32 {
        self.num
    }

    /// The denominator of the reduced fraction.
    pub fn den(self) -> u32 {
        self.den
    }

    /// One frame's duration in 90 kHz ticks (exact: checked by [`FrameRate::new`]).
    pub fn frame_ticks(self) -> i64 {
        PTS_HZ * i64::from(self.den) / i64::from(self.num)
    }

    /// The whole number of frames nearest to `secs` seconds (half up):
    /// `secs × num / den`. At 30000/1001, 4 s is 120 frames (4.004 s).
    pub fn frames_in(self, secs: u32) -> u64 {
        let (n, d) = (u64::from(self.num), u64::from(self.den));
        (2 * u64::from(secs) * n + d) / (2 * d)
    }

    /// The media time at which frame `frames` (from 0) starts.
    pub fn media_time(self, frames: u64) -> std::time::Duration {
        let us = u128::from(frames) * 1_000_000 * u128::from(self.den) / u128::from(self.num);
        std::time::Duration::from_micros(u64::try_from(us).unwrap_or(u64::MAX))
    }

    /// Parses a decimal that names an NTSC rate (`29.97`, `59.94`, `23.976`)
    /// to the digits written: `k × 1000/1001` for the integer `k` nearest to
    /// `d × 1.001`, if it rounds to `d` at that many decimals.
    fn ntsc(int: &str, frac: &str) -> Option<(u32, u32)> {
        if int.is_empty() || frac.is_empty() || int.len() > 3 || frac.len() > 6 {
            return None;
        }
        if !(int.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let q = 10u64.pow(u32::try_from(frac.len()).ok()?);
        let p = int.parse::<u64>().ok()? * q + frac.parse::<u64>().ok()?;
        if p % q == 0 {
            return Some((u32::try_from(p / q).ok()?, 1));
        }
        // k = round(p × 1001 / (q × 1000)).
        let k = (2 * p * 1001 + q * 1000) / (2 * q * 1000);
        // |p/q − k×1000/1001| < 1/2 unit of the last decimal written, i.e.
        // 2 × |p × 1001 − k × 1000 × q| < 1001.
        let diff = (p * 1001).abs_diff(k * 1000 * q);
        (2 * diff < 1001).then_some((u32::try_from(k * 1000).ok()?, 1001))
    }
}

impl Default for FrameRate {
    fn default() -> Self {
        FrameRate::DEFAULT
    }
}

impl fmt::Display for FrameRate {
    /// `25` or `30000/1001`: the form FFmpeg's `rate`/`fps`/`framerate`
    /// options take, and the form that parses back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

impl FromStr for FrameRate {
    type Err = FrameRateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| FrameRateError {
            text: s.to_owned(),
            reason,
        };
        let t = s.trim();
        let term = |v: &str| {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("expected N, N/D or an NTSC decimal such as 29.97"));
            }
            v.parse::<u32>().map_err(|_| err("too large"))
        };
        let (num, den) = if let Some((n, d)) = t.split_once('/') {
            (term(n)?, term(d)?)
        } else if let Some((i, f)) = t.split_once('.') {
            FrameRate::ntsc(i, f).ok_or_else(|| {
                err(
                    "a decimal rate must be an integer or an NTSC rate (29.97, 59.94); \
                     write any other rate as N/D",
                )
            })?
        } else {
            (term(t)?, 1)
        };
        FrameRate::new(num, den).map_err(|e| FrameRateError {
            text: s.to_owned(),
            reason: e.reason,
        })
    }
}

impl<'de> serde::Deserialize<'de> for FrameRate {
    /// From a TOML integer (`25`), string (`"30000/1001"`, `"29.97"`) or
    /// float (`29.97`, read through its shortest decimal form).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = FrameRate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a frame rate: 25, \"30000/1001\" or 29.97")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<FrameRate, E> {
                let n = u32::try_from(v).map_err(|_| E::custom("frame rate too large"))?;
                FrameRate::new(n, 1).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<FrameRate, E> {
                let n = u64::try_from(v).map_err(|_| E::custom("negative frame rate"))?;
                self.visit_u64(n)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<FrameRate, E> {
                // Rust prints the shortest decimal that reads back as `v`:
                // 29.97 prints "29.97", the digits the user wrote.
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FrameRate, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_reduce_and_print() {
        for (text, num, den) in [
            ("25", 25, 1),
            ("30", 30, 1),
            ("30000/1001", 30_000, 1001),
            ("29.97", 30_000, 1001),
            ("29.970", 30_000, 1001),
            ("14.985", 15_000, 1001),
            ("25.0", 25, 1),
            ("50/2", 25, 1),
            ("60", 60, 1),
            ("1", 1, 1),
            ("240", 240, 1),
        ] {
            let r: FrameRate = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((r.num(), r.den()), (num, den), "{text}");
            assert_eq!(r.to_string().parse::<FrameRate>().unwrap(), r);
        }
        assert_eq!(FrameRate::NTSC.to_string(), "30000/1001");
        for bad in [
            "",
            "0",
            "7",
            "24000/1001",
            "60000/1001",
            "23.976",
            "59.94",
            "29.9",
            "29.5",
            "30/0",
            "0/1",
            "1/2",
            "241",
            "-25",
            "25fps",
            "1e3",
            "30.",
            ".5",
            "4294967296",
        ] {
            assert!(
                bad.parse::<FrameRate>().is_err(),
                "{bad:?} should not parse"
            );
        }
    }

    #[test]
    fn frame_ticks_and_counts_are_exact_over_a_day() {
        assert_eq!(FrameRate::NTSC.frame_ticks(), 3003);
        assert_eq!("25".parse::<FrameRate>().unwrap().frame_ticks(), 3600);
        assert_eq!(FrameRate::DEFAULT.frame_ticks(), 3000);
        // A 4 s segment at 29.97 is 120 frames; at 25, 100.
        assert_eq!(FrameRate::NTSC.frames_in(4), 120);
        assert_eq!("25".parse::<FrameRate>().unwrap().frames_in(4), 100);
        // 27 h of frames at 30000/1001: the n-th frame's media time is
        // n × 1001/30000 s exactly, no drift (a float step of 1/29.97 s
        // would be off by whole milliseconds by then).
        let n = FrameRate::NTSC.frames_in(27 * 3600);
        assert_eq!(n, 2_913_087);
        assert_eq!(
            FrameRate::NTSC.media_time(30_000 * 97),
            std::time::Duration::from_secs(1001 * 97)
        );
        assert_eq!(
            i64::try_from(n).unwrap() * FrameRate::NTSC.frame_ticks(),
            // 2_913_087 × 1001 / 30000 s, in 90 kHz ticks
            8_748_000_261
        );
    }

    #[test]
    fn config_forms_deserialize() {
        #[derive(serde::Deserialize)]
        struct C {
            fps: FrameRate,
        }
        let read = |s: &str| toml::from_str::<C>(s).map(|c| c.fps);
        assert_eq!(read("fps = 25").unwrap().to_string(), "25");
        assert_eq!(read("fps = \"30000/1001\"").unwrap(), FrameRate::NTSC);
        assert_eq!(read("fps = 29.97").unwrap(), FrameRate::NTSC);
        assert_eq!(read("fps = \"29.97\"").unwrap(), FrameRate::NTSC);
        assert!(read("fps = 7").is_err());
        assert!(read("fps = 23.976").is_err());
        assert!(read("fps = -30").is_err());
        assert!(read("fps = 29.9").is_err());
    }
}
