//! Alert email goes over real SMTP to a real (loopback) server.

mod common;

use std::time::Duration;

use herald::telemetry::email::Mailer;

#[tokio::test]
async fn an_alert_reaches_every_recipient_intact() {
    let sink = common::smtp::start().await;
    let recipients = ["ops@example.test".to_owned(), "oncall@example.test".to_owned()];
    let mailer = Mailer::new(&sink.url(), "herald@example.test", &recipients).expect("mailer");

    let subject = "Endpoint disabled: café-orders";
    let body = "Endpoint ep_01 of app Acme failed for 5 days and was disabled.\n\
                .this line starts with a dot\n\
                Réactivez-le une fois réparé.\n";
    mailer.send(subject, body).await.expect("sent");

    let mails = sink.wait_for(1).await;
    assert_eq!(mails.len(), 1, "one mail for all recipients: {mails:#?}");
    let mail = &mails[0];
    assert_eq!(mail.from, "herald@example.test");
    assert_eq!(mail.to, recipients);
    assert_eq!(mail.subject().as_deref(), Some(subject), "{}", mail.data);
    // lettre closes DATA with its own CRLF even after a final line end, so
    // the server sees one more empty line; the text itself must be intact.
    assert_eq!(
        mail.body().trim_end_matches('\n'),
        body.trim_end_matches('\n'),
        "{}",
        mail.data
    );
    let to = mail.header("To").expect("To header");
    assert!(
        to.contains("ops@example.test") && to.contains("oncall@example.test"),
        "{to}"
    );
}

#[tokio::test]
async fn a_closed_port_is_an_error_not_a_hang() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let mailer = Mailer::new(
        &format!("smtp://127.0.0.1:{port}"),
        "herald@example.test",
        &["ops@example.test".into()],
    )
    .expect("mailer");

    let sent = tokio::time::timeout(Duration::from_secs(15), mailer.send("subject", "body"))
        .await
        .expect("send gives up within its own timeout");
    let e = sent.expect_err("nothing listens there");
    assert!(e.to_string().starts_with("cannot send the email"), "{e}");
}

#[tokio::test]
async fn the_sink_takes_several_mails_on_one_connection() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let sink = common::smtp::start().await;
    let address = sink.url().replace("smtp://", "");
    let stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut reply = async |command: &str| {
        write.write_all(command.as_bytes()).await.expect("write");
        lines.next_line().await.expect("read").expect("a reply")
    };
    assert!(reply("").await.starts_with("220"));
    assert!(reply("HELO client.test\r\n").await.starts_with("250"));
    assert!(reply("MAIL FROM:<dropped@example.test>\r\n").await.starts_with("250"));
    assert!(reply("RSET\r\n").await.starts_with("250"));
    assert!(reply("DATA\r\n").await.starts_with("503"), "no DATA after RSET");
    for n in 1..=2 {
        assert!(
            reply("MAIL FROM:<a@example.test> BODY=8BITMIME\r\n")
                .await
                .starts_with("250")
        );
        assert!(reply("rcpt to:<b@example.test>\r\n").await.starts_with("250"));
        assert!(reply("DATA\r\n").await.starts_with("354"));
        let data = format!("Subject: number {n}\r\n\r\n..dot\r\nend\r\n.\r\n");
        assert!(reply(&data).await.starts_with("250"));
        assert!(reply("NOOP\r\n").await.starts_with("250"));
    }
    assert!(reply("QUIT\r\n").await.starts_with("221"));

    let mails = sink.wait_for(2).await;
    assert_eq!(mails.len(), 2, "{mails:#?}");
    for (n, mail) in (1..).zip(&mails) {
        assert_eq!(
            (mail.from.as_str(), mail.to.as_slice()),
            ("a@example.test", &["b@example.test".to_owned()][..])
        );
        assert_eq!(mail.subject(), Some(format!("number {n}")));
        assert_eq!(mail.body(), ".dot\nend\n");
    }
}
