//! What both HTTP transports (the `api` Lambda and `batchops serve`) answer: the job center's
//! pages ([`crate::page`]), S3 Control's XML calls under `/v20180820/` ([`crate::s3control`]),
//! the JSON routes elsewhere ([`crate::api`]). Authentication stays with the transport.

use crate::api::{self, ApiRequest};
use crate::page::{self, PageResponse};
use crate::s3control;
use crate::App;

/// An HTTP answer, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl From<s3control::XmlResponse> for HttpReply {
    fn from(response: s3control::XmlResponse) -> Self {
        HttpReply {
            status: response.status,
            content_type: "application/xml",
            body: response.body.into_bytes(),
        }
    }
}

/// Answers `request`; `account_id` is its `x-amz-account-id` header (S3 Control calls).
pub async fn respond(app: &App, request: &ApiRequest, account_id: Option<&str>) -> HttpReply {
    if let Some(page) = Box::pin(page::handle_page(app, &request.method, &request.path)).await {
        return HttpReply {
            status: page.status,
            content_type: PageResponse::CONTENT_TYPE,
            body: page.body.into_bytes(),
        };
    }
    if s3control::is_s3control_path(&request.path) {
        Box::pin(s3control::handle(app, request, account_id))
            .await
            .into()
    } else {
        let response = Box::pin(api::handle(app, request)).await;
        HttpReply {
            status: response.status,
            content_type: "application/json",
            body: response.body.to_string().into_bytes(),
        }
    }
}
