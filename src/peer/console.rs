//! Where `peer` and `unpeer` talk to the user, and their wait loop. On a terminal the progress
//! block (one line per direction) is redrawn in place, each line cut to the terminal's width so
//! that none wraps and the redraw stays in place; otherwise (a pipe, a CI log) a line is printed
//! only when it changed, so logs stay readable. Tests give a buffer.

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use tokio::time::Instant;

/// Output, and whether it is a terminal.
pub struct Console {
    out: Box<dyn Write + Send>,
    tty: bool,
    /// The terminal's width now (asked at each redraw: terminals get resized).
    width: Box<dyn Fn() -> Option<usize> + Send>,
    /// The progress block as last shown, and how many of its lines are on screen.
    shown: Vec<String>,
    drawn: usize,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("tty", &self.tty)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// Standard output; a terminal gets the redrawn block.
    pub fn stdout() -> Self {
        let mut console = Console::new(Box::new(io::stdout()), io::stdout().is_terminal());
        console.width = Box::new(|| {
            rustix::termios::tcgetwinsize(io::stdout())
                .ok()
                .map(|w| usize::from(w.ws_col))
                .filter(|w| *w > 0)
        });
        console
    }

    /// A console writing to `out`; `tty`: redraw the progress block in place.
    pub fn new(out: Box<dyn Write + Send>, tty: bool) -> Self {
        Console {
            out,
            tty,
            width: Box::new(|| None),
            shown: Vec::new(),
            drawn: 0,
        }
    }

    /// Sets how the terminal's width is known (tests).
    pub fn with_width(mut self, width: impl Fn() -> Option<usize> + Send + 'static) -> Self {
        self.width = Box::new(width);
        self
    }

    /// A line that stays (it ends the progress block, if one is shown).
    pub fn say(&mut self, text: &str) -> io::Result<()> {
        self.end_progress();
        writeln!(self.out, "{text}")?;
        self.out.flush()
    }

    /// Shows the progress block: redrawn on a terminal, changed lines only otherwise.
    pub fn progress(&mut self, lines: &[String]) -> io::Result<()> {
        if self.tty {
            if self.drawn > 0 {
                write!(self.out, "\x1b[{}A", self.drawn)?;
            }
            let width = (self.width)();
            for line in lines {
                write!(self.out, "\r\x1b[2K{}\n", fit(line, width))?;
            }
            self.drawn = lines.len();
        } else {
            for (i, line) in lines.iter().enumerate() {
                if self.shown.get(i) != Some(line) {
                    writeln!(self.out, "{line}")?;
                }
            }
        }
        self.shown = lines.to_vec();
        self.out.flush()
    }

    /// Leaves the progress block on screen as it is; the next block starts below it.
    pub fn end_progress(&mut self) {
        self.shown.clear();
        self.drawn = 0;
    }
}

/// `line` cut to fit in `width` columns (one left free), with `…` where it was cut.
fn fit(line: &str, width: Option<usize>) -> String {
    match width {
        Some(w) if line.chars().count() >= w => {
            let keep = w.saturating_sub(2);
            let mut cut: String = line.chars().take(keep).collect();
            cut.push('…');
            cut
        }
        _ => line.to_owned(),
    }
}

/// Looks every `interval` until `done`, showing `lines` of each look, for at most until
/// `deadline`: `Ok` with the look that was done, `Err` with the last one.
pub async fn wait_for<T>(
    console: &mut Console,
    deadline: Instant,
    interval: Duration,
    mut look: impl AsyncFnMut() -> T,
    lines: impl Fn(&T) -> Vec<String>,
    done: impl Fn(&T) -> bool,
) -> io::Result<Result<T, T>> {
    loop {
        let seen = look().await;
        console.progress(&lines(&seen))?;
        if done(&seen) {
            console.end_progress();
            return Ok(Ok(seen));
        }
        if Instant::now() + interval > deadline {
            console.end_progress();
            return Ok(Err(seen));
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn without_a_terminal_only_changed_lines_are_printed() {
        let buf = Buffer::default();
        let mut c = Console::new(Box::new(buf.clone()), false);
        c.progress(&lines(&["a: waiting", "b: waiting"])).unwrap();
        c.progress(&lines(&["a: waiting", "b: waiting"])).unwrap();
        c.progress(&lines(&["a: connected", "b: waiting"])).unwrap();
        c.say("done").unwrap();
        assert_eq!(buf.text(), "a: waiting\nb: waiting\na: connected\ndone\n");
        assert!(!buf.text().contains('\x1b'));
    }

    #[test]
    fn on_a_terminal_the_block_is_redrawn_in_place() {
        let buf = Buffer::default();
        let mut c = Console::new(Box::new(buf.clone()), true);
        c.progress(&lines(&["a: waiting", "b: waiting"])).unwrap();
        c.progress(&lines(&["a: connected", "b: waiting"])).unwrap();
        let text = buf.text();
        assert!(text.starts_with("\r\x1b[2Ka: waiting\n"));
        assert!(text.contains("\x1b[2A\r\x1b[2Ka: connected\n"), "{text:?}");
    }

    #[test]
    fn on_a_terminal_lines_are_cut_to_its_width() {
        let buf = Buffer::default();
        let mut c = Console::new(Box::new(buf.clone()), true).with_width(|| Some(12));
        c.progress(&lines(&["a → b: tunnel connecting", "short"]))
            .unwrap();
        assert_eq!(buf.text(), "\r\x1b[2Ka → b: tun…\n\r\x1b[2Kshort\n");
        assert_eq!(fit("exactly 10", Some(11)), "exactly 10");
        assert_eq!(fit("whatever", None), "whatever");
    }

    #[tokio::test]
    async fn waiting_ends_when_done_or_at_the_deadline() {
        let mut c = Console::new(Box::new(Buffer::default()), false);
        let mut n = 0;
        let found = wait_for(
            &mut c,
            Instant::now() + Duration::from_secs(60),
            Duration::from_millis(1),
            async || {
                n += 1;
                n
            },
            |n| vec![n.to_string()],
            |n| *n == 3,
        )
        .await
        .unwrap();
        assert_eq!(found, Ok(3));
        let late = wait_for(
            &mut c,
            Instant::now(),
            Duration::from_millis(1),
            async || 7,
            |n| vec![n.to_string()],
            |_| false,
        )
        .await
        .unwrap();
        assert_eq!(late, Err(7));
    }
}
