//! tokio-echo — the echo anchor of `make bench`.
//!
//! Usage: `tokio-echo ADDR` (for example `tokio-echo 127.0.0.1:0`).
//!
//! The server binds ADDR, prints `listening on <bound addr>` on stdout (flushed, so a
//! driver reading the pipe can learn the port the kernel picked) and serves every
//! connection with a task that owns a 1 KiB buffer and loops read → write_all until EOF.
//! It runs on tokio's current-thread runtime: one thread, like netlistenerd's scheduler,
//! so the comparison measures the event loop and per-connection state, not parallelism.
//!
//! Shutdown: SIGTERM or SIGINT ends the process with status 0. Standard input is not
//! watched (a driver that starts it with stdin closed must not make it exit).
//!
//! Fairness notes: Nagle is disabled on accepted sockets (the echo load is
//! request/response; netlistenerd's `Disable_Nagle_Algorithm` should be set the same way
//! in the bench config). No logging on the hot path; accept errors are printed and the
//! loop backs off briefly instead of spinning (EMFILE under the idle scenario).

use std::io::Write;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};

const BUF_SIZE: usize = 1024;

async fn serve(mut stream: TcpStream) {
    let mut buf = [0u8; BUF_SIZE];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn accept_loop(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream));
            }
            Err(e) => {
                eprintln!("tokio-echo: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn main() {
    let addr = match std::env::args().nth(1) {
        Some(a) => a,
        None => {
            eprintln!("usage: tokio-echo ADDR   (e.g. tokio-echo 127.0.0.1:0)");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("tokio-echo: cannot build the runtime");
    rt.block_on(async move {
        let listener = match TcpListener::bind(&addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("tokio-echo: bind {addr}: {e}");
                std::process::exit(1);
            }
        };
        let bound = listener.local_addr().expect("tokio-echo: local_addr");
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "listening on {bound}");
            let _ = out.flush();
        }
        let mut term = signal(SignalKind::terminate()).expect("tokio-echo: SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("tokio-echo: SIGINT handler");
        tokio::select! {
            _ = accept_loop(listener) => {}
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    });
}
