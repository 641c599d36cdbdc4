//! What a program prints about itself instead of running: shell completions and man pages,
//! generated from its clap definition so that they cannot drift from `--help`, and the
//! installation's identity.

use std::io::{self, Write};

use clap::CommandFactory;

/// The options every program has for printing something about itself instead of running,
/// flattened into its arguments so that `--help` and the man page list them. They are acted
/// on by [`handle`], before the usual parsing.
#[derive(clap::Args, Debug)]
pub struct About {
    /// Print a completion script for this shell (bash, elvish, fish, powershell, zsh) and exit
    #[arg(long, value_name = "SHELL")]
    pub completions: Option<clap_complete::Shell>,
    /// Print a man page (roff) and exit
    #[arg(long)]
    pub man: bool,
}

/// What a program can print about itself instead of running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generate {
    /// Its completion script for this shell.
    Completions(clap_complete::Shell),
    /// Its man page, in roff.
    Man,
    /// The installation's identity (`--show-identity`), made on first use.
    Identity,
}

/// What the command line `args` (without the program's name) asks to generate, if anything:
/// `--completions SHELL` (or `--completions=SHELL`) or `--man`, anywhere on the line. Looked
/// for before clap parses, so that the program's required arguments need not be given.
///
/// # Errors
///
/// A message for a shell that is not known.
pub fn requested(args: &[String]) -> Result<Option<Generate>, String> {
    if args.iter().any(|a| a == "--man") {
        return Ok(Some(Generate::Man));
    }
    if args.iter().any(|a| a == "--show-identity") {
        return Ok(Some(Generate::Identity));
    }
    let shell = args
        .iter()
        .enumerate()
        .find_map(|(i, a)| match a.strip_prefix("--completions") {
            Some("") => Some(args.get(i + 1).cloned().unwrap_or_default()),
            Some(rest) => rest.strip_prefix('=').map(str::to_string),
            None => None,
        });
    match shell {
        None => Ok(None),
        Some(shell) => shell
            .parse::<clap_complete::Shell>()
            .map(|s| Some(Generate::Completions(s)))
            .map_err(|_| {
                format!(
                    "--completions: unknown shell {shell:?} (bash, elvish, fish, powershell, zsh)"
                )
            }),
    }
}

/// If the command line asks for completions or a man page of program `A` (or, when
/// `identity`, for the installation's identity), prints them and exits (0; 1 when that fails;
/// 2 for an unknown shell); otherwise returns.
pub fn handle<A: CommandFactory>(identity: bool) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match requested(&args) {
        Ok(None) => return,
        Ok(Some(Generate::Identity)) if !identity => return,
        Ok(Some(what)) => match print::<A>(what) {
            Ok(()) => 0,
            Err(err) => {
                eprintln!("{}: {err}", A::command().get_name());
                1
            }
        },
        Err(message) => {
            eprintln!("{}: {message}", A::command().get_name());
            2
        }
    };
    std::process::exit(code);
}

/// Prints what `what` asks for about program `A` on stdout.
///
/// # Errors
///
/// If stdout cannot be written.
pub fn print<A: CommandFactory>(what: Generate) -> io::Result<()> {
    let mut cmd = A::command();
    let name = cmd.get_name().to_string();
    // Made in memory first: clap_complete panics on a failed write, and a reader such as
    // `head` may close the pipe early, which is an ordinary error here.
    let mut text = Vec::new();
    match what {
        Generate::Completions(shell) => clap_complete::generate(shell, &mut cmd, name, &mut text),
        Generate::Man => clap_mangen::Man::new(cmd).render(&mut text)?,
        Generate::Identity => {
            let keys =
                crate::secure::keys::installation(|v| std::env::var(v).ok()).map_err(|err| {
                    io::Error::other(format!("cannot use this installation's identity: {err}"))
                })?;
            writeln!(text, "{}", keys.identity())?;
        }
    }
    let mut out = io::stdout().lock();
    out.write_all(&text)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_found_anywhere_on_the_line() {
        let line = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        use clap_complete::Shell;
        let cases = [
            (line(&["--man"]), Some(Generate::Man)),
            (line(&["dir", "--man"]), Some(Generate::Man)),
            (
                line(&["--completions", "bash"]),
                Some(Generate::Completions(Shell::Bash)),
            ),
            (
                line(&["--completions=zsh"]),
                Some(Generate::Completions(Shell::Zsh)),
            ),
            (line(&["dir", "-p", "0"]), None),
            (line(&["--show-identity"]), Some(Generate::Identity)),
        ];
        for (args, expected) in cases {
            assert_eq!(requested(&args), Ok(expected), "{args:?}");
        }
        assert!(requested(&line(&["--completions", "cmd.exe"])).is_err());
        assert!(requested(&line(&["--completions"])).is_err());
    }
}
