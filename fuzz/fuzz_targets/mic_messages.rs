#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| novnc_audio_fuzz::mic_messages(data));
