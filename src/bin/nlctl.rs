//! `nlctl`: the console client of `netlistenerd` (see `nlctl(1)`).
//!
//! `nlctl [-s SOCKET] COMMAND...` sends one command and prints the reply; exit status 0 on
//! `OK`, 1 on `ERR`, 2 when the daemon cannot be reached or the reply is malformed. With no
//! command and a terminal on standard input it is an interactive prompt.
//!
//! The socket is a Unix socket path, or `host:port` for a TCP console. Default: the
//! `NLCTL_SOCKET` environment variable, else `<temp dir>/netlistener-<uid>/control.sock` (the
//! shipped `conf.d/`'s Control Listen).

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

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

/// Sends one command; returns (ok, text).
fn exchange(r: &mut BufReader<Box<dyn Stream>>, cmd: &str) -> Result<(bool, String), String> {
    r.get_mut()
        .write_all(format!("{cmd}\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut head = String::new();
    match r.read_line(&mut head) {
        Ok(0) => return Err("the daemon closed the connection".into()),
        Ok(_) => {}
        Err(e) => return Err(format!("read: {e}")),
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
    r.read_exact(&mut body).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&body).into_owned();
    match tag {
        "OK" => Ok((true, text)),
        "ERR" => Ok((false, text)),
        _ => Err(format!("malformed reply tag: {tag:?}")),
    }
}

fn default_socket() -> String {
    std::env::var("NLCTL_SOCKET").unwrap_or_else(|_| {
        netlistener::daemon::default_runtime_dir()
            .join("control.sock")
            .display()
            .to_string()
    })
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut socket = default_socket();
    if args.first().map(String::as_str) == Some("-s") {
        if args.len() < 2 {
            eprintln!("usage: nlctl [-s SOCKET] COMMAND...");
            return ExitCode::from(2);
        }
        socket = args[1].clone();
        args.drain(..2);
    }
    if matches!(args.first().map(String::as_str), Some("-h" | "--help")) {
        println!("usage: nlctl [-s SOCKET] COMMAND...   (nlctl help lists the commands)");
        return ExitCode::SUCCESS;
    }
    let stream = match connect(&socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nlctl: cannot reach netlistenerd at {socket}: {e}");
            eprintln!(
                "nlctl: is the daemon running? (start it with `make run`, or pass -s SOCKET)"
            );
            return ExitCode::from(2);
        }
    };
    let mut r = BufReader::new(stream);
    if !args.is_empty() {
        return one(&mut r, &args.join(" "));
    }
    if !std::io::stdin().is_terminal() {
        // Commands from a pipe, one per line; the status is the last command's.
        let mut code = ExitCode::SUCCESS;
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if !line.trim().is_empty() {
                code = one(&mut r, line.trim());
            }
        }
        return code;
    }
    interactive(&mut r, &socket)
}

fn one(r: &mut BufReader<Box<dyn Stream>>, cmd: &str) -> ExitCode {
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

fn interactive(r: &mut BufReader<Box<dyn Stream>>, socket: &str) -> ExitCode {
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
        if cmd == "quit" || cmd == "exit" {
            return ExitCode::SUCCESS;
        }
    }
}
