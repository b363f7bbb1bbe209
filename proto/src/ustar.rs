//! POSIX ustar, as much of it as an export package needs: regular files with
//! names of at most 100 bytes, written and read without any dependency, so
//! that `fieldseal-verify` (proto + std) can read a package and a court can
//! open it with any `tar`. Layout: `docs/FORMAT.md` §10.
//!
//! ```text
//! header (512 bytes) ‖ data ‖ zero padding to a multiple of 512   one per member
//! 1024 zero bytes                                                  the end
//!
//! header:  name[100] mode[8] uid[8] gid[8] size[12] mtime[12] chksum[8]
//!          typeflag[1] linkname[100] magic[6]="ustar\0" version[2]="00"
//!          uname[32] gname[32] devmajor[8] devminor[8] prefix[155] pad[12]
//! ```
//!
//! No I/O: [`header`] makes the bytes a writer puts before a member's data,
//! [`parse_header`] reads one header block, [`members`] splits a whole
//! package held in memory.

/// Size of a tar block.
pub const BLOCK: usize = 512;
/// The longest member name this format writes or reads (no `prefix` field).
pub const MAX_NAME: usize = 100;
/// The largest member: 11 octal digits.
pub const MAX_SIZE: u64 = 0o777_7777_7777;
/// What ends an archive: two zero blocks.
pub const TRAILER: [u8; 2 * BLOCK] = [0; 2 * BLOCK];

/// A tar that this reader does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TarError {
    /// The bytes end inside a header or a member's data.
    #[error("the archive ends inside a member (at byte {0})")]
    Truncated(u64),
    /// A header block is not a ustar header of a regular file.
    #[error("header at byte {at}: {why}")]
    BadHeader {
        /// Offset of the header block.
        at: u64,
        /// What is wrong.
        why: &'static str,
    },
    /// Something other than zero bytes follows the end-of-archive blocks.
    #[error("data after the end of the archive (at byte {0})")]
    AfterEnd(u64),
    /// A name this format cannot write (too long, not ASCII printable).
    #[error("member name {0:?} is not 1 to 100 printable ASCII bytes")]
    BadName(String),
    /// A member larger than [`MAX_SIZE`].
    #[error("member of {0} bytes is larger than ustar allows")]
    TooLarge(u64),
}

/// What a header says about its member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The member's name.
    pub name: String,
    /// Its length in bytes.
    pub size: u64,
}

/// Zero bytes after a member of `size` bytes, to the next block.
pub fn padding(size: u64) -> usize {
    let rem = usize::try_from(size % BLOCK as u64).expect("below 512");
    (BLOCK - rem) % BLOCK
}

fn name_ok(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len()) && name.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// `v` as `width - 1` zero-padded octal digits and a NUL.
fn octal(out: &mut [u8], v: u64) {
    let w = out.len() - 1;
    let s = format!("{v:0w$o}");
    out[..w].copy_from_slice(&s.as_bytes()[s.len() - w..]);
    out[w] = 0;
}

/// The header block of a regular file `name` of `size` bytes, mode 0644,
/// owner 0:0, modified at `mtime` (Unix seconds).
///
/// # Errors
/// [`TarError::BadName`], [`TarError::TooLarge`].
pub fn header(name: &str, size: u64, mtime: u64) -> Result<[u8; BLOCK], TarError> {
    if !name_ok(name) {
        return Err(TarError::BadName(name.to_owned()));
    }
    if size > MAX_SIZE {
        return Err(TarError::TooLarge(size));
    }
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime.min(MAX_SIZE));
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is summed with its own field as eight spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Ok(h)
}

/// An octal field: optional leading spaces, octal digits, then NULs or
/// spaces to the end.
fn parse_octal(f: &[u8]) -> Option<u64> {
    let s = f.iter().position(|&b| b != b' ').unwrap_or(f.len());
    let digits = f[s..].iter().take_while(|b| b.is_ascii_digit()).count();
    let rest = &f[s + digits..];
    if digits == 0 || rest.iter().any(|&b| b != 0 && b != b' ') {
        return None;
    }
    f[s..s + digits].iter().try_fold(0u64, |acc, &b| {
        if b > b'7' {
            return None;
        }
        acc.checked_mul(8)?.checked_add(u64::from(b - b'0'))
    })
}

/// Read one header block at offset `at`: `Ok(None)` for a zero block (the
/// end of the archive).
///
/// # Errors
/// [`TarError::BadHeader`] for a bad checksum, a magic other than ustar,
/// anything but a regular file, a `prefix`, or a name that is not 1 to 100
/// printable ASCII bytes.
pub fn parse_header(block: &[u8; BLOCK], at: u64) -> Result<Option<Header>, TarError> {
    if block.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    let bad = |why| TarError::BadHeader { at, why };
    let want = parse_octal(&block[148..156]).ok_or_else(|| bad("checksum is not octal"))?;
    let sum: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    if sum != want {
        return Err(bad("checksum does not match"));
    }
    if &block[257..263] != b"ustar\0" || &block[263..265] != b"00" {
        return Err(bad("not a POSIX ustar header"));
    }
    if !matches!(block[156], b'0' | 0) {
        return Err(bad("not a regular file"));
    }
    if block[345] != 0 {
        return Err(bad("names with a prefix are not used in packages"));
    }
    let end = block[..100].iter().position(|&b| b == 0).unwrap_or(100);
    let name = std::str::from_utf8(&block[..end])
        .ok()
        .filter(|n| name_ok(n))
        .ok_or_else(|| bad("name is not 1 to 100 printable ASCII bytes"))?;
    if block[end..100].iter().any(|&b| b != 0) {
        return Err(bad("name field holds bytes after its end"));
    }
    let size = parse_octal(&block[124..136]).ok_or_else(|| bad("size is not octal"))?;
    Ok(Some(Header {
        name: name.to_owned(),
        size,
    }))
}

/// Split a whole archive into its members, in order, as (name, data).
///
/// # Errors
/// Any [`TarError`]: a bad header, bytes ending inside a member or before
/// the two zero blocks, or non-zero bytes after them.
pub fn members(bytes: &[u8]) -> Result<Vec<(String, &[u8])>, TarError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let off = |n: usize| n as u64;
    loop {
        let Some(block) = bytes.get(at..at + BLOCK) else {
            return Err(TarError::Truncated(off(at)));
        };
        let block: &[u8; BLOCK] = block.try_into().expect("one block");
        let Some(h) = parse_header(block, off(at))? else {
            // One zero block seen; the second must follow, then only zeros.
            let rest = bytes.get(at + BLOCK..at + 2 * BLOCK);
            if rest.is_none_or(|r| r.iter().any(|&b| b != 0)) {
                return Err(TarError::Truncated(off(at)));
            }
            if let Some(p) = bytes[at + 2 * BLOCK..].iter().position(|&b| b != 0) {
                return Err(TarError::AfterEnd(off(at + 2 * BLOCK + p)));
            }
            return Ok(out);
        };
        let start = at + BLOCK;
        let size = usize::try_from(h.size).map_err(|_| TarError::Truncated(off(start)))?;
        let end = start
            .checked_add(size)
            .filter(|&e| e <= bytes.len())
            .ok_or(TarError::Truncated(off(start)))?;
        out.push((h.name, &bytes[start..end]));
        at = end + padding(h.size);
    }
}

/// A whole archive of `members` (name, data), in memory, each with
/// modification time `mtime`. For tests and small packages; the server
/// streams with [`header`] and [`padding`].
///
/// # Errors
/// As [`header`].
pub fn build(members: &[(String, Vec<u8>)], mtime: u64) -> Result<Vec<u8>, TarError> {
    let mut out = Vec::new();
    for (name, data) in members {
        out.extend_from_slice(&header(name, data.len() as u64, mtime)?);
        out.extend_from_slice(data);
        out.resize(out.len() + padding(data.len() as u64), 0);
    }
    out.extend_from_slice(&TRAILER);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let m = vec![
            ("a/b.txt".to_owned(), b"hello".to_vec()),
            ("empty".to_owned(), Vec::new()),
            ("big".to_owned(), vec![7u8; 1024]),
        ];
        let tar = build(&m, 1_700_000_000).unwrap();
        assert_eq!(tar.len(), 512 + 512 + 512 + 512 + 1024 + 1024);
        let got = members(&tar).unwrap();
        let want: Vec<(String, &[u8])> = m.iter().map(|(n, d)| (n.clone(), &d[..])).collect();
        assert_eq!(got, want);
    }

    /// The header matches what GNU tar writes for the same file (checked
    /// with `tar --format=ustar`, mode, owner and time set alike): its
    /// checksum field and layout.
    #[test]
    fn header_fields_are_ustar() {
        let h = header("x", 5, 0).unwrap();
        assert_eq!(&h[124..136], b"00000000005\0");
        assert_eq!(&h[100..108], b"0000644\0");
        assert_eq!(&h[257..265], b"ustar\x0000");
        let sum: u32 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u32::from(b)
                }
            })
            .sum();
        assert_eq!(&h[148..156], format!("{sum:06o}\0 ").as_bytes());
    }

    #[test]
    fn damage_is_refused_with_the_reason() {
        let tar = build(&[("a".to_owned(), b"abc".to_vec())], 0).unwrap();
        let mut flipped = tar.clone();
        flipped[10] = b'z';
        assert!(
            matches!(members(&flipped), Err(TarError::BadHeader { why, .. }) if why.contains("checksum"))
        );
        assert!(matches!(members(&tar[..600]), Err(TarError::Truncated(_))));
        assert!(matches!(
            members(&tar[..1024 + 512]),
            Err(TarError::Truncated(_))
        ));
        let mut after = tar.clone();
        after.extend_from_slice(&[0, 0, 1]);
        assert!(matches!(members(&after), Err(TarError::AfterEnd(_))));
        assert!(matches!(
            header(&"n".repeat(101), 0, 0),
            Err(TarError::BadName(_))
        ));
        assert!(matches!(header("a b", 0, 0), Err(TarError::BadName(_))));
    }
}
