//! PROTOCOL 1.4 over real HTTP, with a real backend socket.

use serde_json::{json, Value};

use crate::common::*;

// PROTOCOL 1.4 `/request_agent`: register_agent to the backend, the
// matching agent_details is the answer.
#[test_deadline::test]
async fn request_agent_round_trip() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let url = s.url("/request_agent");
    let req = actix_web::rt::spawn(async move {
        post_json(
            &url,
            json!({"provider_data": {"worker": "w1"}, "client_timestamp": 3.5}),
        )
        .await
    });
    let p = b.recv_type("register_agent").await;
    let request_id = p["data"]["request_id"].as_str().unwrap().to_string();
    assert_eq!(p["subject_id"], json!(request_id));
    assert_eq!(p["data"]["provider_data"], json!({"worker": "w1"}));
    assert_eq!(p["client_timestamp"], json!(3.5));
    assert_eq!(request_id.len(), 36, "uuid4: {request_id}");
    b.send(
        json!({"packet_type": "agent_details", "subject_id": request_id,
                  "data": {"request_id": request_id, "agent_id": "agent-9"}}),
    )
    .await;
    let (status, answer) = req.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(answer["packet_type"], json!("agent_details"));
    assert_eq!(answer["data"]["agent_id"], json!("agent-9"));
    s.stop().await;
}

// agent_details keyed by subject_id when data.request_id is absent.
#[test_deadline::test]
async fn agent_details_may_be_keyed_by_subject_id() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let url = s.url("/request_agent");
    let req = actix_web::rt::spawn(async move {
        post_json(&url, json!({"provider_data": {}, "client_timestamp": 1})).await
    });
    let p = b.recv_type("register_agent").await;
    let rid = p["subject_id"].clone();
    b.send(json!({"packet_type": "agent_details", "subject_id": rid, "data": {"agent_id": "x"}}))
        .await;
    assert_eq!(req.await.unwrap().1["data"]["agent_id"], json!("x"));
    s.stop().await;
}

// PROTOCOL 1.4: no answer within the request timeout -> 408 (reference bug
// 1.6: the Node router waits forever); a late answer is dropped and counted.
#[test_deadline::test]
async fn request_agent_times_out_with_408() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let (status, body, took) = timed(post_json(
        &s.url("/request_agent"),
        json!({"provider_data": {}, "client_timestamp": 1}),
    ))
    .await;
    assert_eq!(status, 408);
    assert_within_request_timeout(&s, took);
    // PROTOCOL 1.4: a JSON error saying what went wrong (its words are free).
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    let p = b.recv_type("register_agent").await;
    b.send(
        json!({"packet_type": "agent_details", "subject_id": p["subject_id"],
                  "data": {"request_id": p["subject_id"]}}),
    )
    .await;
    s.wait_metric(
        "switchyard_packets_dropped_total",
        &[("reason", "unmatched_agent_details")],
        1.0,
    )
    .await;
    s.wait_metric(
        "switchyard_http_requests_total",
        &[("route", "/request_agent"), ("status", "408")],
        1.0,
    )
    .await;
    s.stop().await;
}

// A request while the backend is away waits in the outbox and is answered
// once the backend connects within the timeout.
#[test_deadline::test]
async fn request_agent_waits_for_a_late_backend() {
    let s = Switch::start_with(|c| c.backend.request_timeout_secs = 5.0).await;
    let url = s.url("/request_agent");
    let req = actix_web::rt::spawn(async move {
        post_json(
            &url,
            json!({"provider_data": {"p": 1}, "client_timestamp": 1}),
        )
        .await
    });
    s.wait_metric("switchyard_backend_outbox_depth", &[], 1.0)
        .await;
    let mut b = s.backend().await;
    let p = b.recv_type("register_agent").await;
    b.send(
        json!({"packet_type": "agent_details", "subject_id": p["subject_id"],
                  "data": {"request_id": p["data"]["request_id"], "agent_id": "late"}}),
    )
    .await;
    let (status, answer) = req.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(answer["data"]["agent_id"], json!("late"));
    s.stop().await;
}

#[test_deadline::test]
async fn request_agent_without_provider_data_is_400() {
    let s = Switch::start().await;
    let (status, body) = post_json(&s.url("/request_agent"), json!({"client_timestamp": 1})).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("provider_data"));
    let (status, body) = post_raw(
        &s.url("/request_agent"),
        "application/json",
        b"{oops".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("invalid JSON"));
    s.wait_metric(
        "switchyard_malformed_input_total",
        &[("kind", "bad_http_body")],
        2.0,
    )
    .await;
    s.stop().await;
}

// PROTOCOL 1.4 `/submit_onboarding`.
#[test_deadline::test]
async fn submit_onboarding_round_trip_and_agent_dropped() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let _a = s.agent("ag1").await;
    s.wait_metric("switchyard_actors_live", &[("kind", "Agent")], 1.0)
        .await;
    let url = s.url("/submit_onboarding");
    let req = actix_web::rt::spawn(async move {
        post_json(
            &url,
            json!({"provider_data": {"USED_AGENT_ID": "ag1", "answer": 42}, "client_timestamp": 2}),
        )
        .await
    });
    let p = b.recv_type("submit_onboarding").await;
    assert_eq!(p["subject_id"], json!("ag1"));
    assert_eq!(p["data"]["answer"], json!(42));
    assert_eq!(p["data"]["onboarding_data"], json!({}));
    assert!(p["data"].get("USED_AGENT_ID").is_none());
    let rid = p["data"]["request_id"].clone();
    b.send(json!({"packet_type": "agent_details", "subject_id": "ag1",
                  "data": {"request_id": rid, "agent_id": "ag2"}}))
        .await;
    let (status, answer) = req.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(answer["data"]["agent_id"], json!("ag2"));
    s.wait_metric("switchyard_actors_live", &[("kind", "Agent")], 0.0)
        .await;
    s.stop().await;
}

// PROTOCOL 1.4 `/submit_task` as JSON: submit_unit, answer, agent dropped.
#[test_deadline::test]
async fn submit_task_json() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let _a = s.agent("ag1").await;
    let (status, body) = post_json(
        &s.url("/submit_task"),
        json!({"USED_AGENT_ID": "ag1", "final_data": {"answer": "yes"}, "client_timestamp": 4}),
    )
    .await;
    assert_eq!((status, body), (200, json!({"status": "Submitted!"})));
    let p = b.recv_type("submit_unit").await;
    assert_eq!(p["subject_id"], json!("ag1"));
    assert_eq!(p["data"], json!({"answer": "yes"}));
    assert_eq!(p["client_timestamp"], json!(4));
    s.wait_metric("switchyard_actors_live", &[("kind", "Agent")], 0.0)
        .await;
    s.stop().await;
}

// PROTOCOL 1.4 `/submit_task` multipart: files stored under fresh names,
// described in data.files and data.filesByFields, downloadable; nothing
// else is (reference bug 1.6: Node serves any file in /tmp).
#[test_deadline::test]
async fn submit_task_multipart_stores_files_and_serves_only_them() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let (ctype, body) = multipart(
        &[
            ("USED_AGENT_ID", "ag1"),
            ("final_string_data", r#"{"rating": 5}"#),
            ("client_timestamp", "7.25"),
        ],
        &[
            ("photo", "../../a b.txt", b"first file"),
            ("photo", "second.txt", b"second"),
            ("doc", "doc.txt", b"third"),
        ],
    );
    let (status, answer) = post_raw(&s.url("/submit_task"), &ctype, body).await;
    assert_eq!((status, answer), (200, json!({"status": "Submitted!"})));
    let p = b.recv_type("submit_unit").await;
    assert_eq!(p["data"]["rating"], json!(5));
    assert_eq!(p["client_timestamp"], json!(7.25));
    let files = p["data"]["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    assert_eq!(
        p["data"]["filesByFields"]["photo"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        p["data"]["filesByFields"]["doc"].as_array().unwrap().len(),
        1
    );
    let first = &files[0];
    assert_eq!(first["originalname"], json!("../../a b.txt"));
    assert_eq!(first["size"], json!(10));
    let name = first["filename"].as_str().unwrap();
    assert!(!name.contains('/') && name.ends_with("a_b.txt"), "{name}");
    let (status, _, text) = get(&s.url(&format!("/download_file/{name}"))).await;
    assert_eq!((status, text.as_str()), (200, "first file"));
    s.wait_metric("switchyard_uploaded_files_total", &[], 3.0)
        .await;

    // A file in the upload dir that the switch did not store is not served.
    let upload_dir = s.running.config.upload_dir();
    std::fs::write(upload_dir.join("planted.txt"), b"secret").unwrap();
    for bad in [
        "planted.txt",
        "..%2Fuploads.index",
        "%2E%2E",
        "a%5Cb",
        "nope",
    ] {
        let (status, _, _) = get(&s.url(&format!("/download_file/{bad}"))).await;
        assert_eq!(status, 404, "{bad}");
    }
    s.stop().await;
}

#[test_deadline::test]
async fn submit_task_with_invalid_final_string_data_is_400() {
    let s = Switch::start().await;
    let (ctype, body) = multipart(
        &[("USED_AGENT_ID", "a"), ("final_string_data", "{nope")],
        &[],
    );
    let (status, answer) = post_raw(&s.url("/submit_task"), &ctype, body).await;
    assert_eq!(status, 400);
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("final_string_data"));
    let (status, _) = post_json(&s.url("/submit_task"), json!({"final_data": {}})).await;
    assert_eq!(status, 400, "missing USED_AGENT_ID");
    s.stop().await;
}

// Bodies over their limit -> 413 with a JSON error; nothing stored.
// Multipart bodies have the upload limit, JSON bodies their own (1.5).
#[test_deadline::test]
async fn bodies_over_the_limit_are_413() {
    let s = Switch::start_with(|c| {
        c.max_upload_bytes = 64 * 1024;
        c.max_json_body_bytes = 64 * 1024;
    })
    .await;
    let big = vec![b'z'; 100 * 1024];
    let (ctype, body) = multipart(
        &[("USED_AGENT_ID", "a"), ("final_string_data", "{}")],
        &[("f", "big.bin", &big)],
    );
    let (status, answer) = post_raw(&s.url("/submit_task"), &ctype, body).await;
    assert_eq!(status, 413);
    assert!(answer["error"].as_str().unwrap().contains("limit"));
    let stored: Vec<_> = std::fs::read_dir(s.running.config.upload_dir())
        .unwrap()
        .collect();
    assert!(stored.is_empty(), "nothing half-stored: {stored:?}");
    let (status, _) = post_json(
        &s.url("/log_error"),
        json!({"USED_AGENT_ID": "a", "error_data": "x".repeat(100 * 1024)}),
    )
    .await;
    assert_eq!(status, 413);
    s.wait_metric(
        "switchyard_malformed_input_total",
        &[("kind", "body_too_large")],
        2.0,
    )
    .await;
    s.stop().await;
}

// PROTOCOL 1.4 `/submit_metadata` (JSON and multipart) and `/log_error`.
#[test_deadline::test]
async fn submit_metadata_and_log_error() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let (status, body) = post_json(
        &s.url("/submit_metadata"),
        json!({"USED_AGENT_ID": "a1", "metadata": {"tips": ["t"]}, "client_timestamp": 1}),
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({"status": "Submitted metadata"}))
    );
    let p = b.recv_type("submit_metadata").await;
    assert_eq!(
        (p["subject_id"].clone(), p["data"].clone()),
        (json!("a1"), json!({"tips": ["t"]}))
    );

    let (ctype, body) = multipart(&[("USED_AGENT_ID", "a2"), ("metadata", r#"{"f": 1}"#)], &[]);
    let (status, _) = post_raw(&s.url("/submit_metadata"), &ctype, body).await;
    assert_eq!(status, 200);
    assert_eq!(
        b.recv_type("submit_metadata").await["data"],
        json!({"f": 1, "files": [], "filesByFields": {}})
    );

    let (status, body) = post_json(
        &s.url("/log_error"),
        json!({"USED_AGENT_ID": "a1", "error_data": {"msg": "boom"}, "client_timestamp": 1}),
    )
    .await;
    assert_eq!((status, body), (200, json!({"status": "Error log sent!"})));
    let p = b.recv_type("log_error").await;
    assert_eq!(p["data"], json!({"msg": "boom"}));
    s.stop().await;
}

// PROTOCOL 1.4 `/task_config.json`: served; a version mismatch is reported
// to the backend (reference bug 1.6: Flask's handler has a wrong signature).
#[test_deadline::test]
async fn task_config_reports_version_mismatch() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let (status, cfg) = get_json(&s.url("/task_config.json?mephisto_task_version=2.0.4")).await;
    assert_eq!(status, 200);
    assert!(cfg.is_object());
    // The 1.5 line's `mephisto-core` reports its own version: expected too.
    let (status, _) = get_json(&s.url("/task_config.json?mephisto_task_version=1.5.1")).await;
    assert_eq!(status, 200);
    let (status, _) = get_json(&s.url("/task_config.json?mephisto_task_version=1.0.0")).await;
    assert_eq!(status, 200);
    let p = b.recv_type("log_error").await;
    assert_eq!(p["subject_id"], json!("mephisto"));
    assert_eq!(p["data"]["error_type"], json!("version-mismatch"));
    assert!(p["data"]["text"].as_str().unwrap().contains("1.0.0"));
    // Only the mismatch was reported.
    b.send(json!({"packet_type": "request_statuses", "subject_id": "mephisto", "data": {}}))
        .await;
    assert_eq!(b.recv().await["packet_type"], json!("return_statuses"));
    s.stop().await;
}

#[test_deadline::test]
async fn small_endpoints_answer_json() {
    let s = Switch::start().await;
    assert_eq!(
        get_json(&s.url("/is_alive")).await,
        (200, json!({"status": "Alive!"}))
    );
    let (status, t) = get_json(&s.url("/get_timestamp")).await;
    assert_eq!(status, 200);
    let ms = t["timestamp"].as_i64().unwrap();
    assert!((ms - switchyard_actors::clock::now_ms()).abs() < 60_000);
    for path in ["/", "/task_index", "/welcome", "/index.html"] {
        let (status, ctype, body) = get(&s.url(path)).await;
        assert_eq!(status, 200, "{path}");
        assert!(ctype.starts_with("text/html"), "{path}: {ctype}");
        assert!(body.contains("switchyard"));
    }
    let (status, v) = get_json(&s.url("/no/such/file.js")).await;
    assert_eq!((status, v), (404, json!({"error": "not found"})));
    s.stop().await;
}

// A static dir replaces the built-in files; escapes are refused.
#[test_deadline::test]
async fn static_dir_is_served() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<p>task bundle</p>").unwrap();
    std::fs::create_dir(dir.path().join("js")).unwrap();
    std::fs::write(dir.path().join("js/app.js"), "let x = 1;").unwrap();
    std::fs::write(
        dir.path().join("task_config.json"),
        r#"{"task_title": "mine"}"#,
    )
    .unwrap();
    let static_dir = dir.path().to_path_buf();
    let s = Switch::start_with(move |c| c.static_dir = Some(static_dir)).await;
    let (_, ctype, body) = get(&s.url("/")).await;
    assert!(ctype.starts_with("text/html") && body.contains("task bundle"));
    let (status, ctype, body) = get(&s.url("/js/app.js")).await;
    assert_eq!((status, body.as_str()), (200, "let x = 1;"));
    assert!(ctype.contains("javascript"), "{ctype}");
    let (_, cfg) = get_json(&s.url("/task_config.json?mephisto_task_version=2.0.4")).await;
    assert_eq!(cfg, json!({"task_title": "mine"}));
    let (status, _, _) = get(&s.url("/js/..%2F..%2Fetc%2Fpasswd")).await;
    assert_eq!(status, 404);
    s.stop().await;
}

// The HTTP request counter is by route and status.
#[test_deadline::test]
async fn http_requests_are_counted_by_route_and_status() {
    let s = Switch::start().await;
    for _ in 0..3 {
        get(&s.url("/is_alive")).await;
    }
    get(&s.url("/download_file/x")).await;
    s.wait_metric(
        "switchyard_http_requests_total",
        &[("route", "/is_alive"), ("status", "200")],
        3.0,
    )
    .await;
    s.wait_metric(
        "switchyard_http_requests_total",
        &[("route", "/download_file/{name}"), ("status", "404")],
        1.0,
    )
    .await;
    let _: Value = Value::Null;
    s.stop().await;
}

/// A multipart body with parts in the order given: `(name, Some(filename),
/// bytes)` is a file part, `(name, None, text)` a text field.
fn multipart_parts(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----switchyard-test-boundary-15ab";
    let mut body = Vec::new();
    for (name, filename, bytes) in parts {
        let head = match filename {
            Some(f) => format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: image/png\r\n\r\n"
            ),
            None => format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
        };
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

const OPINION: &str =
    r#"{"worker_opinion":{"questions":[{"question":"General Worker Opinion","text":"fine"}]}}"#;

// PROTOCOL 1.4 `/submit_metadata` multipart, as the 1.5 line's
// `mephisto-core` sends its worker-opinion form: attachments first, then
// `data`, `files` (the browser's own file list), `type`, `USED_AGENT_ID`,
// `metadata` (= `data`) and `client_timestamp`. The backend reads
// `data.files[].filename` (to download each file), `data.filesByFields` and
// `data.worker_opinion.questions[].question/.text`.
#[test_deadline::test]
async fn submit_metadata_multipart_worker_opinion_with_files() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let (ctype, body) = multipart_parts(&[
        ("attachments", Some("shot one.png"), b"png-1"),
        ("attachments", Some("shot2.png"), b"png-two"),
        ("data", None, OPINION.as_bytes()),
        (
            "files",
            None,
            br#"[{"lastModified":1,"name":"shot one.png","size":5,"type":"image/png"}]"#,
        ),
        ("type", None, b"worker_opinion"),
        ("USED_AGENT_ID", None, b"ag-15"),
        ("metadata", None, OPINION.as_bytes()),
        ("client_timestamp", None, b"1733123456.789"),
    ]);
    let (status, answer) = post_raw(&s.url("/submit_metadata"), &ctype, body).await;
    assert_eq!(
        (status, answer),
        (200, json!({"status": "Submitted metadata"}))
    );
    let p = b.recv_type("submit_metadata").await;
    assert_eq!(p["subject_id"], json!("ag-15"));
    // Kept as sent: the reference router forwards the form's text.
    assert_eq!(p["client_timestamp"], json!("1733123456.789"));
    assert!(p["router_incoming_timestamp"].is_f64());
    let data = &p["data"];
    assert_eq!(
        data["worker_opinion"]["questions"][0],
        json!({"question": "General Worker Opinion", "text": "fine"})
    );
    let files = data["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["fieldname"], json!("attachments"));
    assert_eq!(files[0]["originalname"], json!("shot one.png"));
    assert_eq!(files[0]["mimetype"], json!("image/png"));
    assert_eq!(files[1]["size"], json!(7));
    let by_field = data["filesByFields"]["attachments"].as_array().unwrap();
    assert_eq!(by_field.len(), 2);
    for (entry, file) in by_field.iter().zip(files) {
        assert!(entry.get("fieldname").is_none(), "{entry}");
        assert_eq!(entry["filename"], file["filename"]);
        assert_eq!(entry["path"], file["path"]);
    }
    assert_eq!(data.as_object().unwrap().len(), 3, "{data}");
    // The backend fetches each file by its stored name.
    let name = files[0]["filename"].as_str().unwrap();
    let (status, _, text) = get(&s.url(&format!("/download_file/{name}"))).await;
    assert_eq!((status, text.as_str()), (200, "png-1"));
    s.wait_metric("switchyard_uploaded_files_total", &[], 2.0)
        .await;
    s.stop().await;
}

// PROTOCOL 1.4 multipart rules: every multipart request (`/submit_task`
// and `/submit_metadata`) gets `files: []` and `filesByFields: {}` when no
// file came (the 1.5 line's backend reads both keys unconditionally); a
// JSON request keeps its data as sent.
#[test_deadline::test]
async fn multipart_without_files_gets_empty_file_keys() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let (ctype, body) = multipart_parts(&[
        ("data", None, OPINION.as_bytes()),
        ("files", None, b"[]"),
        ("type", None, b"worker_opinion"),
        ("USED_AGENT_ID", None, b"ag-1"),
        ("metadata", None, OPINION.as_bytes()),
        ("client_timestamp", None, b"17.5"),
    ]);
    let (status, _) = post_raw(&s.url("/submit_metadata"), &ctype, body).await;
    assert_eq!(status, 200);
    let p = b.recv_type("submit_metadata").await;
    assert_eq!(p["data"]["files"], json!([]));
    assert_eq!(p["data"]["filesByFields"], json!({}));
    assert_eq!(
        p["data"]["worker_opinion"]["questions"][0]["text"],
        json!("fine")
    );

    let (ctype, body) = multipart(
        &[
            ("USED_AGENT_ID", "ag-2"),
            ("final_string_data", r#"{"answer": 1}"#),
            ("client_timestamp", "18.5"),
        ],
        &[],
    );
    let (status, _) = post_raw(&s.url("/submit_task"), &ctype, body).await;
    assert_eq!(status, 200);
    let p = b.recv_type("submit_unit").await;
    assert_eq!(
        p["data"],
        json!({"answer": 1, "files": [], "filesByFields": {}})
    );
    assert_eq!(p["client_timestamp"], json!(18.5));

    let (status, _) = post_json(
        &s.url("/submit_metadata"),
        json!({"USED_AGENT_ID": "ag-3", "metadata": {"tips": {"header": "h", "text": "t"}}, "client_timestamp": 19.5}),
    )
    .await;
    assert_eq!(status, 200);
    let p = b.recv_type("submit_metadata").await;
    assert_eq!(p["data"], json!({"tips": {"header": "h", "text": "t"}}));
    assert_eq!(p["client_timestamp"], json!(19.5));
    s.stop().await;
}

// PROTOCOL 1.4 multipart rules: a file part with an empty filename (an
// empty file input) is skipped: not stored, not described.
#[test_deadline::test]
async fn file_part_with_empty_filename_is_skipped() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let (ctype, body) = multipart_parts(&[
        ("attachments", Some(""), b"ignored bytes"),
        ("USED_AGENT_ID", None, b"ag-1"),
        ("metadata", None, OPINION.as_bytes()),
        ("doc", Some("kept.txt"), b"kept"),
    ]);
    let (status, _) = post_raw(&s.url("/submit_metadata"), &ctype, body).await;
    assert_eq!(status, 200);
    let p = b.recv_type("submit_metadata").await;
    let files = p["data"]["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0]["originalname"], json!("kept.txt"));
    assert_eq!(
        p["data"]["filesByFields"],
        json!({"doc": [{
            "originalname": "kept.txt",
            "encoding": "7bit",
            "mimetype": "image/png",
            "destination": files[0]["destination"],
            "filename": files[0]["filename"],
            "path": files[0]["path"],
            "size": 4,
        }]})
    );
    let stored: Vec<_> = std::fs::read_dir(s.running.config.upload_dir())
        .unwrap()
        .collect();
    assert_eq!(stored.len(), 1, "only the named file is stored: {stored:?}");

    let (ctype, body) = multipart_parts(&[
        ("USED_AGENT_ID", None, b"ag-2"),
        ("final_string_data", None, b"{}"),
        ("photo", Some(""), b""),
    ]);
    let (status, _) = post_raw(&s.url("/submit_task"), &ctype, body).await;
    assert_eq!(status, 200);
    let p = b.recv_type("submit_unit").await;
    assert_eq!(p["data"], json!({"files": [], "filesByFields": {}}));
    assert_eq!(s.metric("switchyard_uploaded_files_total", &[]).await, 1.0);
    s.stop().await;
}

// PROTOCOL 1.5 bounds on the new multipart path: an upload to
// `/submit_metadata` past `max_upload_bytes` is refused with 413 and a
// JSON error, nothing half-stored stays, the refusal is counted, and the
// switch keeps answering.
#[test_deadline::test]
async fn submit_metadata_upload_over_the_limit_is_413() {
    let s = Switch::start_with(|c| c.max_upload_bytes = 64 * 1024).await;
    let mut b = s.backend().await;
    let big = vec![b'z'; 200 * 1024];
    let (ctype, body) = multipart_parts(&[
        ("USED_AGENT_ID", None, b"ag-1"),
        ("metadata", None, OPINION.as_bytes()),
        ("attachments", Some("huge.png"), &big),
    ]);
    let (status, answer) = post_raw(&s.url("/submit_metadata"), &ctype, body).await;
    assert_eq!(status, 413);
    assert!(
        answer["error"].as_str().unwrap().contains("limit"),
        "{answer}"
    );
    // The same over a stream with no declared length: cut while reading.
    let (ctype, body) = multipart_parts(&[
        ("USED_AGENT_ID", None, b"ag-1"),
        ("metadata", None, OPINION.as_bytes()),
        ("attachments", Some("huge.png"), &big),
    ]);
    stream_refused(&s.url("/submit_metadata"), &ctype, &body).await;
    s.wait_metric(
        "switchyard_malformed_input_total",
        &[("kind", "body_too_large")],
        2.0,
    )
    .await;
    let stored: Vec<_> = std::fs::read_dir(s.running.config.upload_dir())
        .unwrap()
        .collect();
    assert!(stored.is_empty(), "nothing half-stored: {stored:?}");
    let (status, alive) = get_json(&s.url("/is_alive")).await;
    assert_eq!((status, alive), (200, json!({"status": "Alive!"})));
    // No submit reached the backend.
    b.send(json!({"packet_type": "request_statuses", "subject_id": "mephisto", "data": {}}))
        .await;
    assert_eq!(b.recv().await["packet_type"], json!("return_statuses"));
    s.stop().await;
}

// PROTOCOL 1.4 `/download_file/{name}`: a stored file is fetched by its
// stored name whatever the worker called it; a name with dots in a row is
// stored without them (the download refuses `..`, a path step).
#[test_deadline::test]
async fn a_file_named_with_dots_in_a_row_can_be_downloaded() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let (ctype, body) = multipart(
        &[("USED_AGENT_ID", "ag1"), ("final_string_data", "{}")],
        &[("f", "report..final.txt", b"dots")],
    );
    let (status, answer) = post_raw(&s.url("/submit_task"), &ctype, body).await;
    assert_eq!(status, 200, "{answer}");
    let p = b.recv_type("submit_unit").await;
    let name = p["data"]["files"][0]["filename"].as_str().unwrap();
    assert!(name.ends_with("report._final.txt"), "{name}");
    let (status, _, text) = get(&s.url(&format!("/download_file/{name}"))).await;
    assert_eq!((status, text.as_str()), (200, "dots"));
    s.stop().await;
}

// PROTOCOL 1.5 "Agents": ids are bounded in length on the HTTP path too;
// PROTOCOL 1.4: `USED_AGENT_ID` is a string (a number is taken as its
// text, as the reference router does); anything else is a 400.
#[test_deadline::test]
async fn agent_ids_over_http_are_bounded_and_must_be_strings_or_numbers() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let longest = "x".repeat(256);
    let taken = [
        (json!(longest), longest.clone()),
        (json!(42), "42".to_string()),
        (json!(-7), "-7".to_string()),
    ];
    for (id, subject) in taken {
        let (status, answer) = post_json(
            &s.url("/log_error"),
            json!({"USED_AGENT_ID": id, "error_data": {}}),
        )
        .await;
        assert_eq!(status, 200, "{id}: {answer}");
        let p = b.recv_type("log_error").await;
        assert_eq!(p["subject_id"], json!(subject));
    }
    let refused = [
        json!("x".repeat(257)),
        json!(""),
        Value::Null,
        json!(true),
        json!({"a": 1}),
    ];
    for id in &refused {
        let (status, answer) = post_json(
            &s.url("/log_error"),
            json!({"USED_AGENT_ID": id, "error_data": {}}),
        )
        .await;
        assert_eq!(status, 400, "{id}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    s.wait_metric(
        "switchyard_malformed_input_total",
        &[("kind", "bad_http_body")],
        refused.len() as f64,
    )
    .await;
    s.stop().await;
}

// PROTOCOL 1.5 "Bounds": a `client_timestamp` that is no timestamp (a
// long array) is not built into a value and forwarded; it arrives as null.
#[test_deadline::test]
async fn a_client_timestamp_longer_than_any_timestamp_is_null() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let long: Vec<u32> = (0..50).collect();
    for (sent, got) in [(json!(long), Value::Null), (json!(12.5), json!(12.5))] {
        let (status, _) = post_json(
            &s.url("/log_error"),
            json!({"USED_AGENT_ID": "a1", "error_data": {}, "client_timestamp": sent}),
        )
        .await;
        assert_eq!(status, 200);
        let p = b.recv_type("log_error").await;
        assert_eq!(p["client_timestamp"], got, "{p}");
    }
    s.stop().await;
}

// PROTOCOL 1.5 "Bounds": the body limits are the largest bodies taken
// (past them: 413); a body of exactly the limit is served.
#[test_deadline::test]
async fn bodies_of_exactly_the_limit_are_taken() {
    let (ctype, upload) = multipart(
        &[("USED_AGENT_ID", "a1"), ("final_string_data", "{}")],
        &[("f", "f.bin", &[7u8; 1000][..])],
    );
    let upload_len = upload.len();
    let s = Switch::start_with(|c| {
        c.max_json_body_bytes = 4096;
        c.max_upload_bytes = upload_len;
    })
    .await;
    let mut b = s.backend().await;
    let head = r#"{"USED_AGENT_ID": "a1", "error_data": ""#;
    let tail = r#""}"#;
    let json_body = |len: usize| {
        format!("{head}{}{tail}", "e".repeat(len - head.len() - tail.len())).into_bytes()
    };
    let (status, answer) =
        post_raw(&s.url("/log_error"), "application/json", json_body(4096)).await;
    assert_eq!(status, 200, "{answer}");
    b.recv_type("log_error").await;
    let (status, _) = post_raw(&s.url("/log_error"), "application/json", json_body(4097)).await;
    assert_eq!(status, 413);
    let (status, answer) = post_raw(&s.url("/submit_task"), &ctype, upload).await;
    assert_eq!(status, 200, "{answer}");
    b.recv_type("submit_unit").await;
    s.stop().await;
}

// `http_workers = 0` (the default: one worker per core) starts a switch
// that serves.
#[test_deadline::test]
async fn the_default_worker_count_serves() {
    let s = Switch::start_with(|c| c.http_workers = 0).await;
    let (status, alive) = get_json(&s.url("/is_alive")).await;
    assert_eq!((status, alive), (200, json!({"status": "Alive!"})));
    s.stop().await;
}

/// POSTs `body` in 8 KiB chunks with no declared length (so only the
/// streamed count can refuse it) and checks that it is refused: either the
/// answer is read (413) or the switch cut the stream while it was still
/// being sent (a send error). The refusal is counted either way, which
/// the callers check.
async fn stream_refused(url: &str, ctype: &str, body: &[u8]) {
    let stream = futures_util::stream::iter(
        body.chunks(8 * 1024)
            .map(|c| Ok::<_, std::io::Error>(actix_web::web::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let res = http()
        .post(url)
        .insert_header(("content-type", ctype))
        .send_stream(stream)
        .await;
    match res {
        Ok(res) => assert_eq!(res.status().as_u16(), 413, "{url}"),
        Err(e) => assert!(
            matches!(
                e,
                awc::error::SendRequestError::Send(_)
                    | awc::error::SendRequestError::Body(_)
                    | awc::error::SendRequestError::Response(_)
            ),
            "the stream cut while sent, not {e}"
        ),
    }
}

// PROTOCOL 1.5 "Bounds": every part of a streamed multipart body counts
// toward `max_upload_bytes`, the first one too, whatever it is: a file, a
// text field, or a file part with no name. None is stored or forwarded.
#[test_deadline::test]
async fn each_kind_of_part_counts_toward_the_upload_limit_when_it_comes_first() {
    let s = Switch::start_with(|c| c.max_upload_bytes = 64 * 1024).await;
    let mut b = s.backend().await;
    let big = vec![b'z'; 200 * 1024];
    let firsts: [(&str, Option<&str>); 3] = [
        ("attachments", Some("huge.png")),
        ("metadata", None),
        ("attachments", Some("")),
    ];
    for (i, (name, filename)) in firsts.into_iter().enumerate() {
        let (ctype, body) =
            multipart_parts(&[(name, filename, &big), ("USED_AGENT_ID", None, b"ag-1")]);
        stream_refused(&s.url("/submit_metadata"), &ctype, &body).await;
        s.wait_metric(
            "switchyard_malformed_input_total",
            &[("kind", "body_too_large")],
            (i + 1) as f64,
        )
        .await;
    }
    let stored: Vec<_> = std::fs::read_dir(s.running.config.upload_dir())
        .unwrap()
        .collect();
    assert!(stored.is_empty(), "nothing half-stored: {stored:?}");
    // No submit reached the backend: its next packet is the answer to this.
    b.send(json!({"packet_type": "request_statuses", "subject_id": "mephisto", "data": {}}))
        .await;
    assert_eq!(b.recv().await["packet_type"], json!("return_statuses"));
    s.stop().await;
}
