//! Colour on the terminal: `--color auto|always|never`, where `auto` means
//! "when stdout is a terminal and `NO_COLOR` is unset" (no-color.org), and
//! the few ANSI styles the text output uses.

use std::io::IsTerminal;

use clap::ValueEnum;

use crate::model::Severity;

/// When to colour the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ColorChoice {
    /// When stdout is a terminal and NO_COLOR is unset or empty.
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour stdout.
    pub fn enabled(self) -> bool {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        self.resolve(std::io::stdout().is_terminal(), no_color)
    }

    fn resolve(self, terminal: bool, no_color: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => terminal && !no_color,
        }
    }
}

/// Writes styled text, or plain text when colour is off.
#[derive(Debug, Clone, Copy)]
pub struct Painter {
    pub color: bool,
}

impl Painter {
    #[cfg(test)]
    pub const PLAIN: Painter = Painter { color: false };

    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }

    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }

    pub fn green(self, text: &str) -> String {
        self.paint("32", text)
    }

    pub fn red(self, text: &str) -> String {
        self.paint("31", text)
    }

    /// `text` in the colour of `severity`: red, yellow or blue.
    pub fn severity(self, severity: Severity, text: &str) -> String {
        let code = match severity {
            Severity::Critical => "1;31",
            Severity::Warning => "1;33",
            Severity::Info => "1;34",
        };
        self.paint(code, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_colours_a_terminal_unless_no_color() {
        assert!(ColorChoice::Auto.resolve(true, false));
        assert!(!ColorChoice::Auto.resolve(true, true));
        assert!(!ColorChoice::Auto.resolve(false, false));
        assert!(ColorChoice::Always.resolve(false, true), "an explicit flag beats NO_COLOR");
        assert!(!ColorChoice::Never.resolve(true, false));
    }

    #[test]
    fn plain_painters_add_no_escapes() {
        assert_eq!(Painter::PLAIN.severity(Severity::Critical, "x"), "x");
        assert_eq!(Painter { color: true }.severity(Severity::Critical, "x"), "\x1b[1;31mx\x1b[0m");
    }
}
