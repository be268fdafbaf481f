//! Flamegraph SVGs from folded stacks, drawn by inferno (the one pprof-rs
//! re-exports). The SVGs are interactive: click to zoom, Ctrl-F to search.
//!
//! Any profile can use it: fold each stack with [`fold`], count it, and call
//! [`svg`].

use std::fmt::Write;

use pprof::flamegraph as inferno;

/// How to draw a flamegraph. `Default` gives a fluid-width flame graph.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FlamegraphOptions {
    pub(crate) title: String,
    pub(crate) subtitle: Option<String>,
    /// What a count is, e.g. `samples` or `bytes`.
    pub(crate) count_name: String,
    /// Width in pixels; `None` fills the browser window.
    pub(crate) width: Option<usize>,
    /// Leave out frames narrower than this percentage of the total.
    pub(crate) min_width_percent: f64,
    /// Stack-reversed: the leaf functions at the base, merging their callers.
    pub(crate) reverse: bool,
    /// An icicle graph: the base on top, stacks growing downwards.
    pub(crate) icicle: bool,
}

impl Default for FlamegraphOptions {
    fn default() -> Self {
        FlamegraphOptions {
            title: "Flame Graph".into(),
            subtitle: None,
            count_name: "samples".into(),
            width: None,
            min_width_percent: 0.01,
            reverse: false,
            icicle: false,
        }
    }
}

/// Joins frames, root first, into one folded stack: `a;b;c`. Separators in
/// names (`;` appears in Rust array types) become `,`.
pub(crate) fn fold<S: AsRef<str>>(frames: &[S]) -> String {
    let mut out = String::new();
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.extend(frame.as_ref().chars().map(|c| match c {
            ';' => ',',
            '\n' | '\r' => ' ',
            c => c,
        }));
    }
    out
}

/// The SVG of `folded` stacks (`a;b;c`, root first) with their counts.
/// Without any counts, a small SVG that says so.
pub(crate) fn svg(
    folded: impl Iterator<Item = (String, u64)>,
    options: &FlamegraphOptions,
) -> Result<Vec<u8>, std::io::Error> {
    let lines: Vec<String> = folded
        .filter(|(stack, n)| *n > 0 && !stack.is_empty())
        .map(|(stack, n)| format!("{stack} {n}"))
        .collect();
    if lines.is_empty() {
        return Ok(empty(options));
    }
    let mut opts = inferno::Options::default();
    opts.title = options.title.clone();
    opts.subtitle = options.subtitle.clone();
    opts.count_name = options.count_name.clone();
    opts.image_width = options.width;
    opts.min_width = options.min_width_percent;
    opts.reverse_stack_order = options.reverse;
    if options.icicle {
        opts.direction = inferno::Direction::Inverted;
    }
    // Colors by name, so that the same input draws the same picture.
    opts.hash = true;
    opts.deterministic = true;
    let mut out = Vec::new();
    inferno::from_lines(&mut opts, lines.iter().map(String::as_str), &mut out)
        .map_err(std::io::Error::other)?;
    Ok(out)
}

/// An SVG with the title and a line saying there is nothing to draw.
fn empty(options: &FlamegraphOptions) -> Vec<u8> {
    let width = options.width.unwrap_or(1200);
    let mut out = String::new();
    let _ = write!(
        out,
        "<?xml version=\"1.0\" standalone=\"no\"?>\n\
         <svg version=\"1.1\" width=\"{width}\" height=\"90\" viewBox=\"0 0 {width} 90\" \
         xmlns=\"http://www.w3.org/2000/svg\">\n\
         <text x=\"50%\" y=\"24\" text-anchor=\"middle\" font-family=\"monospace\" font-size=\"17\">{}</text>\n\
         <text x=\"50%\" y=\"60\" text-anchor=\"middle\" font-family=\"monospace\" font-size=\"12\">\
         No {} were recorded: there is nothing to draw.</text>\n</svg>\n",
        escape(&options.title),
        escape(&options.count_name),
    );
    out.into_bytes()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> Vec<(String, u64)> {
        vec![("main;work;hot_loop".into(), 90), ("main;work;cold_path".into(), 10), ("main;idle".into(), 5)]
    }

    fn draw(options: &FlamegraphOptions) -> String {
        String::from_utf8(svg(lines().into_iter(), options).unwrap()).unwrap()
    }

    #[test]
    fn the_svg_has_the_title_the_frames_and_the_script() {
        let svg = draw(&FlamegraphOptions { title: "CPU: 2 s, 105 samples".into(), ..Default::default() });
        assert!(svg.contains("CPU: 2 s, 105 samples"));
        assert!(svg.contains("hot_loop (90 samples, 85.71%)"), "{svg}");
        assert!(svg.contains("<script"), "interactive");
        assert!(svg.contains("function search"), "search");
    }

    #[test]
    fn options_reach_inferno() {
        let narrow = draw(&FlamegraphOptions { width: Some(600), ..Default::default() });
        assert!(narrow.contains("width=\"600\""), "{}", &narrow[..400]);
        let pruned = draw(&FlamegraphOptions { min_width_percent: 10.0, ..Default::default() });
        assert!(pruned.contains("hot_loop") && !pruned.contains("cold_path") && !pruned.contains("idle"));
        let reversed = draw(&FlamegraphOptions { reverse: true, ..Default::default() });
        assert!(reversed.contains("hot_loop") && reversed != draw(&FlamegraphOptions::default()));
        let icicle = draw(&FlamegraphOptions { icicle: true, ..Default::default() });
        assert!(icicle.contains("inverted = true"), "icicle");
    }

    #[test]
    fn the_same_input_draws_the_same_svg() {
        assert_eq!(draw(&FlamegraphOptions::default()), draw(&FlamegraphOptions::default()));
    }

    #[test]
    fn no_samples_still_make_an_svg() {
        let options = FlamegraphOptions { title: "CPU <none>".into(), ..Default::default() };
        let svg = String::from_utf8(svg(std::iter::empty(), &options).unwrap()).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("CPU &lt;none&gt;") && svg.contains("No samples"));
    }

    #[test]
    fn folding_keeps_separators_out_of_names() {
        assert_eq!(fold(&["main", "<[u8; 4] as Foo>::bar"]), "main;<[u8, 4] as Foo>::bar");
    }
}
