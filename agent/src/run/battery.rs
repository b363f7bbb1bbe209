//! The battery reading of the run loop: the Linux `power_supply` class in
//! sysfs. What a reading leads to is decided in [`crate::policy`].

use std::path::Path;

/// The charge of the first battery under `root` (Linux `power_supply` class):
/// `None` on mains-only machines.
pub fn battery_percent(root: &Path) -> Option<u8> {
    let mut dirs: Vec<_> = std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .collect();
    dirs.sort_by_key(std::fs::DirEntry::file_name);
    dirs.into_iter().find_map(|d| {
        let kind = std::fs::read_to_string(d.path().join("type")).ok()?;
        if kind.trim() != "Battery" {
            return None;
        }
        let cap: u32 = std::fs::read_to_string(d.path().join("capacity"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        u8::try_from(cap.min(100)).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn battery_is_read_from_the_power_supply_class() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(battery_percent(t.path()), None);
        std::fs::create_dir_all(t.path().join("AC")).unwrap();
        std::fs::write(t.path().join("AC/type"), "Mains\n").unwrap();
        assert_eq!(battery_percent(t.path()), None);
        std::fs::create_dir_all(t.path().join("BAT0")).unwrap();
        std::fs::write(t.path().join("BAT0/type"), "Battery\n").unwrap();
        std::fs::write(t.path().join("BAT0/capacity"), "42\n").unwrap();
        assert_eq!(battery_percent(t.path()), Some(42));
    }
}
