//! Erased is erased (issue 10, item 14): a mail body blanked after delivery or a final
//! failure leaves no copy of its bytes in the SQLite file or its WAL.

use onramp_store::{NewOutbox, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blanked_mail_bodies_leave_no_bytes_in_the_sqlite_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onramp.db");
    let store = Store::connect(&format!("sqlite://{}", path.display()), true).await.unwrap();
    store.migrate().await.unwrap();
    let markers = ["SENT-token-7f3a9c1e5b2d4f6a8c0e", "FAILED-token-2b4d6f8a0c1e3g5h7j9k"];
    let mut ids = vec![];
    for m in markers {
        let mail = NewOutbox {
            kind: "invitation".into(),
            to_addr: "ann@example.com".into(),
            subject: "subject".into(),
            body: format!("open onramp://enroll?token={m} now").repeat(20),
            attachments: format!("[{{\"data\": \"{m}\"}}]"),
            created_at: 1,
            token_id: None,
        };
        ids.push(store.enqueue_mail(&mail).await.unwrap());
    }
    store.mark_mail_sent(ids[0], 2).await.unwrap();
    store.mark_mail_attempt_failed(ids[1], "SMTP down", None, true).await.unwrap();
    store.close().await;
    for file in [path.clone(), dir.path().join("onramp.db-wal")] {
        let Ok(bytes) = std::fs::read(&file) else { continue };
        for m in markers {
            assert!(!bytes.windows(m.len()).any(|w| w == m.as_bytes()), "{} still holds {m}", file.display());
        }
    }
}
