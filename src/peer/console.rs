//! Where `peer` and `unpeer` talk to the user, and their wait loop. On a terminal the progress
//! block (one line per direction) is redrawn in place; otherwise (a pipe, a CI log) a line is
//! printed only when it changed, so logs stay readable. Tests give a buffer.

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use tokio::time::Instant;

/// Output, and whether it is a terminal.
pub struct Console {
    out: Box<dyn Write + Send>,
    tty: bool,
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
        Console::new(Box::new(io::stdout()), io::stdout().is_terminal())
    }

    pub fn new(out: Box<dyn Write + Send>, tty: bool) -> Self {
        Console {
            out,
            tty,
            shown: Vec::new(),
            drawn: 0,
        }
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
            for line in lines {
                write!(self.out, "\r\x1b[2K{line}\n")?;
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
