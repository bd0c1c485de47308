//! The API as a client sees it: shapes, lookups, paging, idempotency, and a
//! clear answer to every kind of bad input.

mod common;

use common::{Backend, Receiver, TOKEN, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn loc(body: &Value) -> Vec<String> {
    body["detail"][0]["loc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap_or("").to_owned())
        .collect()
}

async fn response_shapes_match_the_svix_api(backend: Backend) {
    let app = spawn_app(&backend).await;
    let receiver = Receiver::start().await;
    let created = app
        .post(
            "/api/v1/app",
            json!({"name": "Acme Help Desk", "uid": "acme", "metadata": {"plan": "pro"}}),
        )
        .await;
    let app_id = created.body["id"].as_str().unwrap().to_owned();
    insta::assert_json_snapshot!("application_out", created.body, {".id" => "[app id]", ".createdAt" => "[time]", ".updatedAt" => "[time]"});

    let ep = app
        .create_endpoint(
            &app_id,
            &receiver.url,
            json!({"uid": "main", "filterTypes": ["ticket.created"], "description": "Main hook"}),
        )
        .await;
    insta::assert_json_snapshot!("endpoint_out", ep, {".id" => "[ep id]", ".url" => "[url]", ".secret" => "[secret]", ".createdAt" => "[time]", ".updatedAt" => "[time]"});

    let et = app
        .post(
            "/api/v1/event-type",
            json!({"name": "ticket.created", "description": "A ticket was opened", "groupName": "ticket"}),
        )
        .await;
    assert_eq!(et.status, StatusCode::CREATED);
    insta::assert_json_snapshot!("event_type_out", et.body, {".createdAt" => "[time]", ".updatedAt" => "[time]"});

    let msg = app.publish(&app_id, "ticket.created", json!({"ticket": 42})).await;
    insta::assert_json_snapshot!("message_out", msg, {".id" => "[msg id]", ".timestamp" => "[time]", ".expiresAt" => "[time]"});

    let attempts = app
        .wait_for_attempts(&format!("/api/v1/app/{app_id}/attempt/endpoint/main"), |a| {
            !a.is_empty()
        })
        .await;
    insta::assert_json_snapshot!("message_attempt_out", attempts[0], {
        ".id" => "[attempt id]", ".msgId" => "[msg id]", ".endpointId" => "[ep id]", ".url" => "[url]",
        ".timestamp" => "[time]", ".responseDurationMs" => "[ms]", ".msgTimestamp" => "[time]",
        ".requestHeaders[\"webhook-id\"]" => "[msg id]", ".requestHeaders[\"webhook-signature\"]" => "[signature]",
        ".requestHeaders[\"webhook-timestamp\"]" => "[unix time]", ".responseHeaders.date" => "[http date]"
    });

    let list = app.get("/api/v1/app").await;
    insta::assert_json_snapshot!("application_list", list.body, {
        ".data[].id" => "[app id]", ".data[].createdAt" => "[time]", ".data[].updatedAt" => "[time]", ".prevIterator" => "[iterator]"
    });
}

async fn uids_work_wherever_ids_do(backend: Backend) {
    let app = spawn_app(&backend).await;
    let receiver = Receiver::start().await;
    let created = app.post("/api/v1/app", json!({"name": "Acme", "uid": "acme"})).await;
    let by_uid = app.get("/api/v1/app/acme").await;
    assert_eq!(by_uid.status, StatusCode::OK);
    assert_eq!(by_uid.body["id"], created.body["id"]);

    app.create_endpoint("acme", &receiver.url, json!({"uid": "primary"}))
        .await;
    let ep = app.get("/api/v1/app/acme/endpoint/primary").await;
    assert_eq!(ep.status, StatusCode::OK);
    assert_eq!(
        app.patch("/api/v1/app/acme/endpoint/primary", json!({"description": "renamed"}))
            .await
            .body["description"],
        "renamed"
    );

    // The same uid twice is a conflict; get_if_exists answers the existing one.
    let again = app.post("/api/v1/app", json!({"name": "Acme", "uid": "acme"})).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let existing = app
        .post("/api/v1/app?get_if_exists=true", json!({"name": "Acme", "uid": "acme"}))
        .await;
    assert_eq!(existing.status, StatusCode::OK);
    assert_eq!(existing.body["id"], created.body["id"]);

    // PUT creates when absent, with the path as the uid, and updates when present.
    let put = app.put("/api/v1/app/globex", json!({"name": "Globex"})).await;
    assert_eq!(put.status, StatusCode::CREATED);
    assert_eq!(put.body["uid"], "globex");
    let put = app.put("/api/v1/app/globex", json!({"name": "Globex Corp"})).await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(put.body["name"], "Globex Corp");

    assert_eq!(app.delete("/api/v1/app/globex").await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/v1/app/globex").await.status, StatusCode::NOT_FOUND);
}

async fn lists_page_forwards_and_back_without_gaps(backend: Backend) {
    let app = spawn_app(&backend).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(app.create_app(&format!("app {i}")).await);
    }
    let mut seen = Vec::new();
    let mut iterator: Option<String> = None;
    loop {
        let path = match &iterator {
            Some(it) => format!("/api/v1/app?limit=3&iterator={it}"),
            None => "/api/v1/app?limit=3".to_owned(),
        };
        let page = app.get(&path).await.body;
        assert!(page.get("iterator").is_some(), "iterator is always present");
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["id"].as_str().unwrap().to_owned()),
        );
        if page["done"] == true {
            assert!(page["iterator"].is_null());
            break;
        }
        iterator = page["iterator"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, ids);

    // From the last page, prevIterator walks back.
    let last = app.get(&format!("/api/v1/app?limit=3&iterator={}", ids[5])).await.body;
    assert_eq!(last["data"].as_array().unwrap().len(), 1);
    let prev = last["prevIterator"].as_str().unwrap().to_owned();
    let back = app.get(&format!("/api/v1/app?limit=3&iterator={prev}")).await.body;
    let back_ids: Vec<&str> = back["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(back_ids, ids[3..6].iter().map(String::as_str).collect::<Vec<_>>());

    let bad = app.get("/api/v1/app?limit=0").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(loc(&bad.body), vec!["query", "limit"]);
}

async fn a_repeated_idempotency_key_returns_the_first_answer_and_does_nothing_again(backend: Backend) {
    let app = spawn_app(&backend).await;
    let receiver = Receiver::start().await;
    let app_id = app.create_app("Acme").await;
    app.create_endpoint(&app_id, &receiver.url, json!({})).await;
    let send = |key: &'static str| {
        app.http
            .post(app.url(&format!("/api/v1/app/{app_id}/msg")))
            .bearer_auth(TOKEN)
            .header("idempotency-key", key)
            .json(&json!({"eventType": "ticket.created", "payload": {"n": 1}}))
            .send()
    };
    let first = common::answer(send("auto_1").await.unwrap()).await;
    let second = common::answer(send("auto_1").await.unwrap()).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_eq!(first.body, second.body, "the replay is the first answer");
    let other = common::answer(send("auto_2").await.unwrap()).await;
    assert_ne!(other.body["id"], first.body["id"]);

    let messages = app.get(&format!("/api/v1/app/{app_id}/msg")).await.body;
    assert_eq!(messages["data"].as_array().unwrap().len(), 2);
    receiver.wait_for(2, std::time::Duration::from_secs(10)).await;

    // A duplicate eventId is a conflict, not a second message.
    let path = format!("/api/v1/app/{app_id}/msg");
    let with_event_id = json!({"eventType": "ticket.created", "eventId": "evt-1", "payload": {}});
    assert_eq!(
        app.post(&path, with_event_id.clone()).await.status,
        StatusCode::ACCEPTED
    );
    let dup = app.post(&path, with_event_id).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.body["code"], "conflict");
}

async fn bad_requests_get_the_right_status_and_a_message_that_names_the_problem(backend: Backend) {
    let app = spawn_app(&backend).await;
    let app_id = app.create_app("Acme").await;
    let msg_path = format!("/api/v1/app/{app_id}/msg");

    // Invalid JSON.
    let resp = app
        .http
        .post(app.url(&msg_path))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{\"eventType\": ")
        .send()
        .await
        .unwrap();
    let a = common::answer(resp).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.body["detail"].as_str().unwrap().contains("not valid JSON"),
        "{}",
        a.body
    );

    // Well-formed JSON of the wrong shape names the field.
    let a = app.post(&msg_path, json!({"eventType": "x"})).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        a.body["detail"][0]["msg"].as_str().unwrap().contains("payload"),
        "{}",
        a.body
    );
    let a = app.post(&msg_path, json!({"eventType": 5, "payload": {}})).await;
    assert_eq!(loc(&a.body), vec!["body", "eventType"]);
    let a = app.post(&msg_path, json!({"eventType": "x", "payload": "text"})).await;
    assert_eq!(loc(&a.body), vec!["body", "payload"]);

    // Unknown ids.
    for path in [
        "/api/v1/app/app_01M83VF76CYQNDNYXW8ED05YYN".to_owned(),
        format!("/api/v1/app/{app_id}/endpoint/ep_01M83VF76CYQNDNYXW8ED05YYN"),
        format!("/api/v1/app/{app_id}/msg/msg_01M83VF76CYQNDNYXW8ED05YYN"),
        "/api/v1/event-type/nothing.here".to_owned(),
    ] {
        let a = app.get(&path).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(a.body["code"], "not_found");
    }

    // Missing and wrong tokens.
    let a = common::answer(app.http.get(app.url("/api/v1/app")).send().await.unwrap()).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.body["detail"].as_str().unwrap().contains("Authorization"));
    let a = common::answer(
        app.http
            .get(app.url("/api/v1/app"))
            .bearer_auth("wrong-token")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.body["code"], "authentication_failed");

    // Private-address targets and bad secrets, named by field.
    let ep_path = format!("/api/v1/app/{app_id}/endpoint");
    let a = app
        .post(&ep_path, json!({"url": "https://169.254.169.254/latest/meta-data"}))
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(loc(&a.body), vec!["body", "url"]);
    assert!(
        a.body["detail"][0]["msg"].as_str().unwrap().contains("link-local"),
        "{}",
        a.body
    );
    let a = app
        .post(&ep_path, json!({"url": "https://example.com", "secret": "hunter2"}))
        .await;
    assert_eq!(loc(&a.body), vec!["body", "secret"]);
    let a = app
        .post(
            &ep_path,
            json!({"url": "https://example.com", "headers": {"webhook-id": "x"}}),
        )
        .await;
    assert_eq!(loc(&a.body), vec!["body", "headers", "webhook-id"]);

    // Oversized payload: 413, whether the payload or the whole body is too big.
    let big = "x".repeat(1024 * 1024);
    let a = app
        .post(&msg_path, json!({"eventType": "x", "payload": {"blob": big}}))
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.body["code"], "payload_too_large");
    // Just over the request limit: a far bigger body may be cut off mid-send
    // when the server answers 413 early, which is correct but racy to test.
    let huge = "x".repeat(1024 * 1024 + 128 * 1024);
    let a = app
        .post(&msg_path, json!({"eventType": "x", "payload": {"blob": huge}}))
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Nothing above was stored.
    let listed = app.get(&msg_path).await.body;
    assert_eq!(listed["data"], json!([]));
}

async fn http_urls_are_refused_unless_the_server_allows_them(backend: Backend) {
    let app = common::spawn_app_with(&backend, |s| s.allow_http = Some("false".into())).await;
    let app_id = app.create_app("Acme").await;
    let a = app
        .post(
            &format!("/api/v1/app/{app_id}/endpoint"),
            json!({"url": "http://example.com/hook"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        a.body["detail"][0]["msg"].as_str().unwrap().contains("must use https"),
        "{}",
        a.body
    );
}

async fn health_and_the_openapi_document_need_no_token(backend: Backend) {
    let app = spawn_app(&backend).await;
    let health = common::answer(app.http.get(app.url("/health")).send().await.unwrap()).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "ok");
    let doc = common::answer(app.http.get(app.url("/api/v1/openapi.json")).send().await.unwrap()).await;
    assert_eq!(doc.status, StatusCode::OK);
    let paths = doc.body["paths"].as_object().unwrap();
    for p in [
        "/api/v1/app",
        "/api/v1/app/{app_id}",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret/rotate",
        "/api/v1/app/{app_id}/msg",
        "/api/v1/app/{app_id}/attempt/endpoint/{endpoint_id}",
        "/api/v1/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend",
        "/api/v1/event-type/{event_type_name}",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the OpenAPI document");
    }
}

async fn event_types_are_archived_by_delete_and_expunged_on_request(backend: Backend) {
    let app = spawn_app(&backend).await;
    app.post(
        "/api/v1/event-type",
        json!({"name": "ticket.created", "description": "opened"}),
    )
    .await;
    let dup = app
        .post(
            "/api/v1/event-type",
            json!({"name": "ticket.created", "description": "again"}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    let put = app
        .put(
            "/api/v1/event-type/ticket.created",
            json!({"description": "A ticket was opened"}),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(put.body["description"], "A ticket was opened");

    assert_eq!(
        app.delete("/api/v1/event-type/ticket.created").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get("/api/v1/event-type").await.body["data"], json!([]));
    let all = app.get("/api/v1/event-type?include_archived=true").await.body;
    assert_eq!(all["data"][0]["archived"], true);
    assert_eq!(
        app.delete("/api/v1/event-type/ticket.created?expunge=true")
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/api/v1/event-type/ticket.created").await.status,
        StatusCode::NOT_FOUND
    );
}

on_both_backends!(
    response_shapes_match_the_svix_api,
    uids_work_wherever_ids_do,
    lists_page_forwards_and_back_without_gaps,
    a_repeated_idempotency_key_returns_the_first_answer_and_does_nothing_again,
    bad_requests_get_the_right_status_and_a_message_that_names_the_problem,
    http_urls_are_refused_unless_the_server_allows_them,
    health_and_the_openapi_document_need_no_token,
    event_types_are_archived_by_delete_and_expunged_on_request,
);
