//! The conf writer and reader agree on any values, control characters
//! included: what the writer accepts reads back unchanged, one line per
//! key, with no control character but the line ends; what the reader
//! accepts, the writer accepts too.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nixos_container::conf::Conf;

fuzz_target!(|input: (Vec<(String, Vec<u8>)>, Option<String>, String)| {
    let (pairs, bridge, note) = input;
    // Values as the reader would hand them over (keys from the file; values
    // are bytes, not necessarily UTF-8).
    let pairs = pairs.into_iter().map(|(k, v)| (k, OsString::from_vec(v))).collect();
    if let Ok((conf, _)) = Conf::from_pairs(pairs) {
        conf.check_writable().expect("what the reader accepts, the writer accepts");
        round_trip(&conf);
    }
    // Values as commands set them.
    let conf = Conf { host_bridge: bridge, extra: vec![("NOTE".into(), note.into())], ..Conf::default() };
    if conf.check_writable().is_ok() {
        round_trip(&conf);
    }
});

fn round_trip(conf: &Conf) {
    let text = conf.render();
    // Control characters: Unicode's where the text is UTF-8, ASCII's in
    // the bytes of a value that is not.
    let shown = String::from_utf8_lossy(&text);
    assert!(!shown.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
    let again = Conf::parse(&text, Path::new("fuzz.conf")).expect("a rendered conf parses").0;
    assert_eq!(&again, conf, "render/parse round trip");
}
