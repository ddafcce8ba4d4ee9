//! `nlctl`: the console client of `netlistenerd` (see `nlctl(1)`).
//!
//! `nlctl [-s SOCKET] COMMAND...` sends one command and prints the reply; exit status 0 on
//! `OK`, 1 on `ERR`, 2 when the daemon cannot be reached, the reply is malformed, no reply
//! comes within 30 s, or the command line is wrong (an empty command, a line break in an
//! argument). With no command, it reads commands from standard input: an interactive prompt
//! on a terminal, else one command per line (the status is the last command's). After
//! `shutdown`, `quit` or `exit` the session is over and nlctl leaves with that reply's status.
//!
//! The words of the command are joined with spaces. The first is sent as it is (so
//! `nlctl "show inbound"` works); a later one that is empty or holds whitespace, and holds no
//! double quote, is sent in double quotes, as one word, the console's quoting rule (`config set ESMTP_Listener
//! Static_Banner "220 mx.example.org ready"`). A word that holds a double quote is sent as it
//! is: the console has no escape for a quote inside quotes.
//!
//! The socket is a Unix socket path, or `host:port` for a TCP console. Default: the
//! `NLCTL_SOCKET` environment variable, else `<temp dir>/netlistener-<uid>/control.sock` (the
//! shipped `conf.d/`'s Control Listen) when it exists, else `/run/netlistener/control.sock`
//! (the systemd unit's runtime directory) when that exists.

use std::io::{BufRead, BufReader, ErrorKind, IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);
const USAGE: &str = "usage: nlctl [-s SOCKET] [COMMAND...]   (nlctl help lists the commands)";
/// Where the systemd unit (`RuntimeDirectory=netlistener`) puts the console socket.
const SYSTEMD_SOCKET: &str = "/run/netlistener/control.sock";

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

type Conn = BufReader<Box<dyn Stream>>;

fn connect(target: &str) -> std::io::Result<Box<dyn Stream>> {
    if target.contains('/') || !target.contains(':') {
        let s = std::os::unix::net::UnixStream::connect(target)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        return Ok(Box::new(s));
    }
    let s = std::net::TcpStream::connect(target)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    Ok(Box::new(s))
}

/// A read error as the operator should see it: a timeout says so.
fn read_error(e: std::io::Error) -> String {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            format!("no reply within {}s", TIMEOUT.as_secs())
        }
        _ => format!("read: {e}"),
    }
}

/// Sends one command; returns (ok, text).
fn exchange(r: &mut Conn, cmd: &str) -> Result<(bool, String), String> {
    let sent = r.get_mut().write_all(format!("{cmd}\n").as_bytes());
    // A daemon that refuses the connection writes its reason and closes, maybe before the
    // command arrives (EPIPE): the reason is still there to read, and says more.
    match (reply(r), sent) {
        (Ok(x), _) => Ok(x),
        (Err(_), Err(e)) => Err(format!("send: {e}")),
        (Err(e), Ok(())) => Err(e),
    }
}

/// Reads one framed reply; returns (ok, text).
fn reply(r: &mut Conn) -> Result<(bool, String), String> {
    let mut head = String::new();
    match r.read_line(&mut head) {
        Ok(0) => return Err("the daemon closed the connection".into()),
        Ok(_) => {}
        Err(e) => return Err(read_error(e)),
    }
    let (tag, len) = head
        .trim_end()
        .split_once(' ')
        .ok_or_else(|| format!("malformed reply header: {head:?}"))?;
    let len: usize = len
        .parse()
        .map_err(|_| format!("malformed reply length: {head:?}"))?;
    if len > 64 << 20 {
        return Err(format!("reply too large: {len} bytes"));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(read_error)?;
    let text = String::from_utf8_lossy(&body).into_owned();
    match tag {
        "OK" => Ok((true, text)),
        "ERR" => Ok((false, text)),
        _ => Err(format!("malformed reply tag: {tag:?}")),
    }
}

/// The socket to use when `-s` is not given.
fn default_socket() -> String {
    if let Ok(s) = std::env::var("NLCTL_SOCKET") {
        return s;
    }
    let temp = netlistener::daemon::temp_runtime_dir().join("control.sock");
    if !temp.exists() && std::path::Path::new(SYSTEMD_SOCKET).exists() {
        return SYSTEMD_SOCKET.to_string();
    }
    temp.display().to_string()
}

/// Joins argv into one command line (see the crate doc for the quoting rule).
fn command_line(args: &[String]) -> Result<String, String> {
    if let Some(a) = args.iter().find(|a| a.contains(['\r', '\n'])) {
        return Err(format!(
            "argument {a:?} holds a line break (one command is one line)"
        ));
    }
    let words: Vec<String> = args
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let blank = a.is_empty() || a.contains(char::is_whitespace);
            if i > 0 && blank && !a.contains('"') {
                format!("\"{a}\"")
            } else {
                a.clone()
            }
        })
        .collect();
    if args.iter().all(|a| a.trim().is_empty()) {
        return Err("empty command".to_string());
    }
    Ok(words.join(" "))
}

/// True for the commands after which the daemon ends the console session.
fn ends_session(cmd: &str) -> bool {
    let word = cmd.split_whitespace().next().unwrap_or("");
    ["shutdown", "quit", "exit"]
        .iter()
        .any(|w| w.eq_ignore_ascii_case(word))
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut socket = None;
    if args.first().map(String::as_str) == Some("-s") {
        if args.len() < 2 {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
        socket = Some(args[1].clone());
        args.drain(..2);
    }
    if matches!(args.first().map(String::as_str), Some("-h" | "--help")) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    // A bad command line fails before connecting: nothing is sent.
    let command = if args.is_empty() {
        None
    } else {
        match command_line(&args) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("nlctl: {e}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    };
    let socket = socket.unwrap_or_else(default_socket);
    let Some(mut r) = open(&socket) else {
        return ExitCode::from(2);
    };
    if let Some(cmd) = command {
        return one(&mut r, &cmd);
    }
    if !std::io::stdin().is_terminal() {
        return piped(&mut r);
    }
    interactive(&mut r, &socket)
}

/// Connects, or says why not.
fn open(socket: &str) -> Option<Conn> {
    match connect(socket) {
        Ok(s) => Some(BufReader::new(s)),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            eprintln!(
                "nlctl: cannot reach netlistenerd at {socket}: permission denied \
                 (the console admits root and the daemon's user)"
            );
            None
        }
        Err(e) => {
            eprintln!("nlctl: cannot reach netlistenerd at {socket}: {e}");
            eprintln!(
                "nlctl: is the daemon running? (start it with `make run`, or pass -s SOCKET)"
            );
            None
        }
    }
}

fn one(r: &mut Conn, cmd: &str) -> ExitCode {
    match exchange(r, cmd) {
        Ok((true, text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok((false, text)) => {
            eprint!("{text}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("nlctl: {e}");
            ExitCode::from(2)
        }
    }
}

/// Commands from a pipe, one per line; blank lines skipped; the status is the last command's.
fn piped(r: &mut Conn) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    for line in std::io::stdin().lines().map_while(Result::ok) {
        let cmd = line.trim();
        if cmd.is_empty() {
            continue;
        }
        code = one(r, cmd);
        if ends_session(cmd) {
            break;
        }
    }
    code
}

fn interactive(r: &mut Conn, socket: &str) -> ExitCode {
    println!("connected to netlistenerd at {socket}; `help` lists commands, `quit` leaves");
    let stdin = std::io::stdin();
    loop {
        print!("nlctl> ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).unwrap_or(0) == 0 {
            println!();
            return ExitCode::SUCCESS;
        }
        let cmd = line.trim();
        if cmd.is_empty() {
            continue;
        }
        match exchange(r, cmd) {
            Ok((_, text)) => print!("{text}"),
            Err(e) => {
                eprintln!("nlctl: {e}");
                return ExitCode::from(2);
            }
        }
        // The daemon ends the session after these: leave rather than fail on the next one.
        if ends_session(cmd) {
            return ExitCode::SUCCESS;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(v: &[&str]) -> Result<String, String> {
        command_line(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn words_with_spaces_are_quoted() {
        assert_eq!(
            line(&[
                "config",
                "set",
                "ESMTP_Listener",
                "Static_Banner",
                "220 mx ready"
            ]),
            Ok("config set ESMTP_Listener Static_Banner \"220 mx ready\"".to_string())
        );
        // The first word, and words that hold quotes already, go as they are.
        assert_eq!(line(&["show inbound"]), Ok("show inbound".to_string()));
        assert_eq!(
            line(&[
                "config",
                "get",
                "Echo_Listener Listen \"127.0.0.1:7\"",
                "Enable"
            ]),
            Ok("config get Echo_Listener Listen \"127.0.0.1:7\" Enable".to_string())
        );
        assert_eq!(line(&["pid"]), Ok("pid".to_string()));
        // An empty value is a word too.
        assert_eq!(
            line(&["config", "set", "global", "Runtime_Directory", ""]),
            Ok("config set global Runtime_Directory \"\"".to_string())
        );
    }

    #[test]
    fn empty_commands_and_line_breaks_are_refused() {
        assert_eq!(line(&[""]), Err("empty command".to_string()));
        assert_eq!(line(&[" \t", ""]), Err("empty command".to_string()));
        let e = line(&["config", "set", "x", "y", "a\nshutdown"]).unwrap_err();
        assert!(e.contains("holds a line break"), "{e}");
        assert!(line(&["pid\r"]).is_err());
    }

    #[test]
    fn a_read_timeout_says_so() {
        let e = std::io::Error::from(ErrorKind::WouldBlock);
        assert_eq!(read_error(e), "no reply within 30s");
        let e = std::io::Error::from(ErrorKind::UnexpectedEof);
        assert!(read_error(e).starts_with("read: "));
    }

    #[test]
    fn session_enders() {
        assert!(ends_session("shutdown"));
        assert!(ends_session("QUIT"));
        assert!(!ends_session("summary"));
    }
}
