//! A scripted Kubernetes API server for tests: `tower_test::mock::pair` behind
//! `kube::Client::new`, answering one request at a time and recording what the client sent.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// One request the client made.
#[derive(Debug)]
pub(crate) struct Recorded {
    pub method: http::Method,
    pub path: String,
    pub content_type: Option<String>,
    pub body: Value,
}

/// The server side of a mocked kube client.
pub(crate) struct ApiServer {
    handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
}

/// A client whose requests `ApiServer` answers.
pub(crate) fn mock_client() -> (Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer { handle })
}

impl ApiServer {
    /// Waits (at most 5s) for the next request, answers `status` with the JSON `reply`, and
    /// returns the request.
    pub async fn respond(&mut self, status: u16, reply: Value) -> Recorded {
        self.respond_raw(
            status,
            "application/json",
            serde_json::to_vec(&reply).unwrap(),
        )
        .await
    }

    /// Like [`Self::respond`] with any body, e.g. the API server's plain-text
    /// `404 page not found` for a resource it does not serve.
    pub async fn respond_raw(
        &mut self,
        status: u16,
        content_type: &str,
        reply: impl Into<Vec<u8>>,
    ) -> Recorded {
        let (request, send) =
            tokio::time::timeout(Duration::from_secs(5), self.handle.next_request())
                .await
                .expect("no request within 5s")
                .expect("the client went away");
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let content_type_sent = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = request.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let response = Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .header(http::header::CONTENT_TYPE, content_type)
            .body(Body::from(reply.into()))
            .unwrap();
        send.send_response(response);
        Recorded {
            method,
            path,
            content_type: content_type_sent,
            body,
        }
    }

    /// Asserts that no request arrives for a little while.
    pub async fn expect_none(&mut self) {
        let next =
            tokio::time::timeout(Duration::from_millis(50), self.handle.next_request()).await;
        assert!(
            next.is_err(),
            "unexpected request: {:?}",
            next.unwrap().map(|r| r.0.uri().clone())
        );
    }
}

/// The content type of a JSON merge patch.
pub(crate) const MERGE_PATCH: &str = "application/merge-patch+json";

/// A Kubernetes `Status` error body.
pub(crate) fn api_error(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "code": code, "reason": reason, "message": message,
    })
}
