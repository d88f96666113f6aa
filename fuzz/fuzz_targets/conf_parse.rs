//! The conf parser must never panic, and what it accepts must survive a
//! write and a read unchanged.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nixos_container::conf::Conf;

fuzz_target!(|data: &[u8]| {
    if let Ok((conf, _warnings)) = Conf::parse(data, Path::new("fuzz.conf")) {
        let again = Conf::parse(&conf.render(), Path::new("fuzz.conf"))
            .expect("a rendered conf parses")
            .0;
        assert_eq!(again, conf, "render/parse round trip");
    }
});
