//! The config file: `key = value` lines whose keys are the long option names.

use std::path::Path;

use super::options;
use super::ConfigError;

/// Where the config file lives unless `--config` says otherwise.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/novnc-audio.conf";

/// Parses `key = value` lines of a config file into (key, value) pairs, checking keys.
pub fn parse_config_text(text: &str, origin: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut entries = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(ConfigError::Invalid(format!(
                "{origin}:{}: expected 'key = value', got '{line}'",
                n + 1
            )));
        };
        let key = key.trim();
        let mut value = value.trim();
        if value.len() >= 2
            && ((value.starts_with('"') && value.ends_with('"'))
                || (value.starts_with('\'') && value.ends_with('\'')))
        {
            value = &value[1..value.len() - 1];
        }
        if !options::find(key).is_some_and(|o| o.in_file()) {
            return Err(ConfigError::Invalid(format!(
                "{origin}:{}: unknown key '{key}'",
                n + 1
            )));
        }
        entries.push((key.to_string(), value.to_string()));
    }
    Ok(entries)
}

/// Reads the file at `path` into (key, value) pairs.
pub fn read_config_file(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    parse_config_text(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_keys_lines_and_quotes() {
        let entries = parse_config_text(
            "# comment\nport = 7001\n\nallow-origin = \"https://a\"\n",
            "f",
        )
        .unwrap();
        assert_eq!(
            entries,
            vec![
                ("port".to_string(), "7001".to_string()),
                ("allow-origin".to_string(), "https://a".to_string())
            ]
        );
        let err = parse_config_text("port = 1\nbogus = 2\n", "f.conf").unwrap_err();
        assert_eq!(err.to_string(), "f.conf:2: unknown key 'bogus'");
        let err = parse_config_text("help = true\n", "f.conf").unwrap_err();
        assert!(err.to_string().contains("unknown key 'help'"));
        let err = parse_config_text("port 7001\n", "f.conf").unwrap_err();
        assert!(err.to_string().contains("f.conf:1: expected 'key = value'"));
    }
}
