//! Self-tests for the PostgreSQL and SMTP test harnesses.

use std::process::Command;
use std::time::Duration;

use onramp_testkit::{pg, smtp::SmtpSink};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[tokio::test]
async fn fresh_databases_are_distinct_and_reachable() {
    let a = pg::fresh_database_url().await;
    let b = pg::fresh_database_url().await;
    assert_ne!(a, b);
    for url in [&a, &b] {
        let db = url.rsplit('/').next().unwrap();
        let out = Command::new("psql")
            .args(["-X", "-A", "-t", "-c", "SELECT current_database()", url])
            .output()
            .expect("run psql");
        assert!(out.status.success(), "psql {url} failed: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), db);
    }
}

/// Reads one (possibly multi-line) SMTP reply and checks its code.
async fn expect_reply(r: &mut BufReader<TcpStream>, code: &str) {
    loop {
        let mut line = String::new();
        r.read_line(&mut line).await.expect("read SMTP reply");
        assert!(line.starts_with(code), "expected {code}, got {line:?}");
        // "250-..." continues, "250 ..." ends the reply.
        if line.as_bytes().get(3) != Some(&b'-') {
            return;
        }
    }
}

/// Minimal SMTP client: one message, given envelope, `message` already CRLF-terminated.
async fn send_raw(port: u16, rcpts: &[&str], message: &str) {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let mut r = BufReader::new(stream);
    expect_reply(&mut r, "220").await;
    let mut cmds =
        vec![("HELO client.test\r\n".to_string(), "250"), ("MAIL FROM:<noreply@onramp.test>\r\n".to_string(), "250")];
    cmds.extend(rcpts.iter().map(|to| (format!("RCPT TO:<{to}>\r\n"), "250")));
    cmds.push(("DATA\r\n".to_string(), "354"));
    for (cmd, code) in cmds {
        r.get_mut().write_all(cmd.as_bytes()).await.unwrap();
        expect_reply(&mut r, code).await;
    }
    r.get_mut().write_all(message.as_bytes()).await.unwrap();
    r.get_mut().write_all(b".\r\n").await.unwrap();
    expect_reply(&mut r, "250").await;
    r.get_mut().write_all(b"QUIT\r\n").await.unwrap();
    expect_reply(&mut r, "221").await;
}

async fn send_simple(port: u16, rcpt: &str, subject: &str) {
    let message = format!(
        "From: Onramp <noreply@onramp.test>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nHello {rcpt}\r\n"
    );
    send_raw(port, &[rcpt], &message).await;
}

#[tokio::test]
async fn smtp_sink_receives_survives_outage() {
    let mut sink = SmtpSink::start().await;
    let port = sink.port();

    send_simple(port, "alice@example.test", "First").await;
    let msgs = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].subject, "First");
    assert_eq!(msgs[0].to, vec!["alice@example.test".to_string()]);
    assert_eq!(msgs[0].from, "noreply@onramp.test");
    assert_eq!(msgs[0].text.trim(), "Hello alice@example.test");
    assert_eq!(msgs[0].html, None);
    assert!(msgs[0].attachments.is_empty());

    sink.stop().await;
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "port {port} still accepts connections after stop()"
    );

    sink.restart().await;
    assert_eq!(sink.port(), port);
    send_simple(port, "bob@example.test", "Second").await;
    let msgs = sink.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].subject, "First");
    assert_eq!(msgs[1].subject, "Second");
    assert_eq!(msgs[1].to, vec!["bob@example.test".to_string()]);
}

#[tokio::test]
async fn smtp_sink_parses_mime() {
    let sink = SmtpSink::start().await;
    // multipart/mixed { multipart/alternative { text, html }, base64 attachment },
    // an encoded-word subject and a leading-dot line (needs SMTP dot-stuffing).
    let message = "From: Onramp <noreply@onramp.test>\r\n\
        To: <carol@example.test>\r\n\
        Subject: =?utf-8?B?WW91ciBWUE4g4pyT?=\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
        \r\n\
        --outer\r\n\
        Content-Type: multipart/alternative; boundary=\"inner\"\r\n\
        \r\n\
        --inner\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\
        \r\n\
        Caf=C3=A9 setup\r\n\
        ..dotted\r\n\
        --inner\r\n\
        Content-Type: text/html; charset=utf-8\r\n\
        \r\n\
        <p>Caf\u{e9} setup</p>\r\n\
        --inner--\r\n\
        --outer\r\n\
        Content-Type: application/octet-stream; name=\"wg0.conf\"\r\n\
        Content-Disposition: attachment; filename=\"wg0.conf\"\r\n\
        Content-Transfer-Encoding: base64\r\n\
        \r\n\
        W0ludGVyZmFjZV0K\r\n\
        --outer--\r\n";
    send_raw(sink.port(), &["carol@example.test", "audit@example.test"], message).await;
    let msgs = sink.wait_for(1, Duration::from_secs(10)).await;
    let m = &msgs[0];
    assert_eq!(m.subject, "Your VPN \u{2713}");
    assert_eq!(m.to, ["carol@example.test", "audit@example.test"]);
    assert_eq!(m.text.replace("\r\n", "\n").trim(), "Caf\u{e9} setup\n.dotted");
    assert_eq!(m.html.as_deref().map(str::trim), Some("<p>Caf\u{e9} setup</p>"));
    assert_eq!(
        m.attachments,
        vec![("wg0.conf".to_string(), "application/octet-stream".to_string(), b"[Interface]\n".to_vec())]
    );
    // raw is the message as sent, after SMTP dot-unstuffing.
    assert_eq!(m.raw, message.replace("\r\n..dotted", "\r\n.dotted").into_bytes());
}
