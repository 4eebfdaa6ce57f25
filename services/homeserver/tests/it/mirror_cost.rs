//! What keeping a mirror up to date costs on the wire: bytes between the primary and
//! the mirror for one changed file, counted by a TCP proxy in front of the primary.

use crate::common::{self, TestServer};
use crate::mirror::{PASSWORD, add_mirror};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};

/// A TCP proxy to `target` that counts the bytes it carries both ways.
async fn counting_proxy(
    target: std::net::SocketAddr,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let bytes = std::sync::Arc::new(AtomicU64::new(0));
    let counted = bytes.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let (mut ri, mut wi) = inbound.split();
                let (mut ro, mut wo) = outbound.split();
                let count = |n: usize| counted.fetch_add(n as u64, Ordering::Relaxed);
                let up = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n @ 1..) = tokio::io::AsyncReadExt::read(&mut ri, &mut buf).await {
                        count(n);
                        if tokio::io::AsyncWriteExt::write_all(&mut wo, &buf[..n])
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                };
                let down = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n @ 1..) = tokio::io::AsyncReadExt::read(&mut ro, &mut buf).await {
                        count(n);
                        if tokio::io::AsyncWriteExt::write_all(&mut wi, &buf[..n])
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                };
                tokio::select! { () = up => {}, () = down => {} }
            });
        }
    });
    (url, bytes)
}

#[tokio::test]
async fn one_changed_file_costs_an_up_to_date_mirror_less_than_10_kib() {
    use std::sync::atomic::Ordering;
    let a = common::start().await;
    // The default anti-entropy round (60 s): only the change itself crosses.
    let b = common::start_with(|c| {
        c.admin_listen = Some(([127, 0, 0, 1], 0).into());
        c.admin_password = Some(PASSWORD.into());
    })
    .await;
    let u = a.user().await;
    let z32 = u.z32();
    for n in 0..500 {
        a.put_ok(
            &u,
            &format!("/pub/app/posts/{n:04}.json"),
            &format!("{{\"n\":{n}}}"),
        )
        .await;
    }
    let (via_proxy, bytes) = counting_proxy(a.server.http_addr).await;
    add_mirror(&b, &z32, &via_proxy, None).await;
    let root_on = |s: &TestServer| {
        let url = s.url(&format!("/merkle/{z32}/root"));
        let http = s.http.clone();
        // Null until B has the user and its tree (404, 503 while the tree is built).
        async move {
            match http.get(url).send().await {
                Ok(r) if r.status() == StatusCode::OK => {
                    r.json::<Value>().await.unwrap()["root"].clone()
                }
                _ => Value::Null,
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while root_on(&b).await != root_on(&a).await {
        assert!(Instant::now() < deadline, "the copy never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = bytes.load(Ordering::Relaxed);

    a.put_ok(&u, "/pub/app/posts/0250.json", "{\"n\":\"changed\"}")
        .await;
    while root_on(&b).await != root_on(&a).await {
        assert!(Instant::now() < deadline, "the change never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cost = bytes.load(Ordering::Relaxed) - before;
    println!("one changed file among 500 cost the mirror {cost} bytes between A and B");
    assert!(cost < 10 * 1024, "{cost} bytes");
}
