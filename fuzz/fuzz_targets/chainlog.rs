//! Arbitrary bytes as a chain log file: splitting never panics, and the
//! records plus the torn tail account for every byte when no error is reported.
#![no_main]

use fieldseal_proto::chainlog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (log, err) = chainlog::split_lossy(data);
    let framed: usize = log.records.iter().map(|r| r.len() + 2).sum();
    assert_eq!(framed, log.complete_len);
    if err.is_none() {
        assert_eq!(log.complete_len + log.torn_tail, data.len());
    }
});
