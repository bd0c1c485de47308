//! A real SMTP server on loopback that accepts every mail and keeps it, so
//! tests see exactly what went over the wire. Plain SMTP only: it offers
//! neither STARTTLS nor AUTH, so a client must not need them.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// One mail as the server got it: the envelope and the raw DATA (headers,
/// blank line, body; CRLF line ends, dot-stuffing undone).
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

pub struct SmtpSink {
    addr: SocketAddr,
    mails: watch::Receiver<Vec<Mail>>,
    server: JoinHandle<()>,
}

/// Starts the server on a random loopback port; it stops when the sink is dropped.
pub async fn start() -> SmtpSink {
    start_at("127.0.0.1:0".parse().expect("an address")).await
}

/// A loopback port nothing listens on (yet): an SMTP server that is down,
/// until [`start_at`] starts one there.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// Starts the server at `addr`.
pub async fn start_at(addr: SocketAddr) -> SmtpSink {
    let listener = TcpListener::bind(addr).await.expect("bind the SMTP sink");
    let addr = listener.local_addr().expect("SMTP sink address");
    let (tx, mails) = watch::channel(Vec::new());
    let server = tokio::spawn(async move {
        // Owning the connections here ends them all when the sink is dropped.
        let mut connections = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            while connections.try_join_next().is_some() {}
            let tx = tx.clone();
            connections.spawn(async move {
                // A client that hangs up mid-session is its own business.
                let _ = session(stream, tx).await;
            });
        }
    });
    SmtpSink { addr, mails, server }
}

impl SmtpSink {
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.borrow().clone()
    }

    /// Waits until at least `n` mails have arrived and answers them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Mail> {
        let mut mails = self.mails.clone();
        let enough = async move { mails.wait_for(|m| m.len() >= n).await.map(|m| m.to_vec()) };
        match tokio::time::timeout(Duration::from_secs(10), enough).await {
            Ok(Ok(arrived)) => arrived,
            Ok(Err(_)) => panic!("the SMTP sink stopped while waiting for {n} mail(s)"),
            Err(_) => {
                let arrived = self.mails();
                panic!(
                    "expected {n} mail(s) within 10 s; {} arrived: {arrived:#?}",
                    arrived.len()
                )
            }
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Default)]
struct Envelope {
    from: Option<String>,
    to: Vec<String>,
}

/// One client connection, any number of mails, until QUIT or hang-up.
async fn session(stream: TcpStream, mails: watch::Sender<Vec<Mail>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP test sink ready\r\n").await?;
    let mut envelope = Envelope::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let command = text.trim_end_matches(['\r', '\n']);
        let (verb, argument) = command.split_once(' ').unwrap_or((command, ""));
        let reply: &[u8] = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                envelope = Envelope::default();
                b"250-sink.test greets you\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 10485760\r\n"
            }
            "HELO" => {
                envelope = Envelope::default();
                b"250 sink.test\r\n"
            }
            "MAIL" => match path_after(argument, "FROM:") {
                Some(from) => {
                    envelope = Envelope {
                        from: Some(from),
                        to: Vec::new(),
                    };
                    b"250 2.1.0 sender ok\r\n"
                }
                None => b"501 5.5.4 expected MAIL FROM:<address>\r\n",
            },
            "RCPT" => match (&envelope.from, path_after(argument, "TO:")) {
                (None, _) => b"503 5.5.1 MAIL first\r\n",
                (Some(_), Some(to)) => {
                    envelope.to.push(to);
                    b"250 2.1.5 recipient ok\r\n"
                }
                (Some(_), None) => b"501 5.5.4 expected RCPT TO:<address>\r\n",
            },
            "DATA" => match std::mem::take(&mut envelope) {
                Envelope { from: Some(from), to } if !to.is_empty() => {
                    write.write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n").await?;
                    let Some(data) = read_data(&mut read).await? else {
                        return Ok(());
                    };
                    mails.send_modify(|m| m.push(Mail { from, to, data }));
                    b"250 2.0.0 queued\r\n"
                }
                unfinished => {
                    envelope = unfinished;
                    b"503 5.5.1 MAIL and RCPT first\r\n"
                }
            },
            "RSET" => {
                envelope = Envelope::default();
                b"250 2.0.0 ok\r\n"
            }
            "NOOP" => b"250 2.0.0 ok\r\n",
            "QUIT" => {
                write.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 5.5.2 command not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// The address in `FROM:<a@b> PARAMS` or `TO:<a@b>`, without the brackets.
fn path_after(argument: &str, keyword: &str) -> Option<String> {
    let head = argument.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let path = argument[keyword.len()..].trim_start();
    let inner = path.strip_prefix('<')?;
    let end = inner.find('>')?;
    Some(inner[..end].to_owned())
}

/// DATA lines up to the lone `.`, dot-stuffing undone; `None` if the client
/// hung up first.
async fn read_data(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> std::io::Result<Option<String>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(None);
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(Some(String::from_utf8_lossy(&data).into_owned()));
        }
        let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
        data.extend_from_slice(unstuffed);
    }
}

impl Mail {
    /// The header block and the body, split at the first blank line.
    fn parts(&self) -> (&str, &str) {
        self.data
            .split_once("\r\n\r\n")
            .or_else(|| self.data.split_once("\n\n"))
            .unwrap_or((&self.data, ""))
    }

    /// A header's value, unfolded; names match in any case.
    pub fn header(&self, name: &str) -> Option<String> {
        let (headers, _) = self.parts();
        let mut found: Option<String> = None;
        for line in headers.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(value) = found.as_mut() {
                    value.push_str(line);
                }
                continue;
            }
            if found.is_some() {
                break;
            }
            if let Some((key, value)) = line.split_once(':')
                && key.trim().eq_ignore_ascii_case(name)
            {
                found = Some(value.trim().to_owned());
            }
        }
        found
    }

    /// The subject as written, RFC 2047 encoded words decoded.
    pub fn subject(&self) -> Option<String> {
        self.header("Subject").map(|s| decode_words(&s))
    }

    /// The body text after the blank line, its transfer encoding undone and
    /// line ends as `\n`, so a test compares it with what was sent.
    pub fn body(&self) -> String {
        let (_, body) = self.parts();
        let encoding = self.header("Content-Transfer-Encoding").unwrap_or_default();
        let bytes = match encoding.to_ascii_lowercase().as_str() {
            "quoted-printable" => decode_quoted_printable(body.as_bytes()),
            "base64" => {
                let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .expect("the base64 body decodes")
            }
            _ => body.as_bytes().to_vec(),
        };
        String::from_utf8_lossy(&bytes).replace("\r\n", "\n")
    }
}

fn decode_quoted_printable(input: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i..] {
            [b'=', b'\r', b'\n', ..] => i += 3,
            [b'=', b'\n', ..] => i += 2,
            [b'=', high, low, ..] if hex(high).is_some() && hex(low).is_some() => {
                out.push((hex(high).unwrap_or(0) * 16 + hex(low).unwrap_or(0)) as u8);
                i += 3;
            }
            [byte, ..] => {
                out.push(byte);
                i += 1;
            }
            [] => break,
        }
    }
    out
}

/// Decodes `=?charset?B|Q?text?=` words (UTF-8 assumed, as lettre writes);
/// the white space between two encoded words is dropped, as RFC 2047 says.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut after_word = false;
    while let Some(c) = rest.chars().next() {
        if let Some((decoded, used)) = encoded_word(rest) {
            out.push_str(&decoded);
            rest = &rest[used..];
            after_word = true;
        } else if c == ' ' || c == '\t' {
            let next = rest.trim_start_matches([' ', '\t']);
            if !(after_word && encoded_word(next).is_some()) {
                out.push_str(&rest[..rest.len() - next.len()]);
            }
            rest = next;
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
            after_word = false;
        }
    }
    out
}

/// The decoded text of the encoded word that `s` starts with, and its length.
fn encoded_word(s: &str) -> Option<(String, usize)> {
    let inner = s.strip_prefix("=?")?;
    let (charset, after) = inner.split_once('?')?;
    let (encoding, after) = after.split_once('?')?;
    let end = after.find("?=")?;
    let text = &after[..end];
    if text.contains([' ', '\t']) {
        return None;
    }
    let bytes = match encoding {
        "B" | "b" => base64::engine::general_purpose::STANDARD.decode(text).ok()?,
        "Q" | "q" => decode_quoted_printable(text.replace('_', " ").as_bytes()),
        _ => return None,
    };
    let used = 2 + charset.len() + 1 + encoding.len() + 1 + end + 2;
    Some((String::from_utf8_lossy(&bytes).into_owned(), used))
}
