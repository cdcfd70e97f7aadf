//! gRPC calls with bytes sent and received as they are: a client that speaks gRPC but not
//! twinset.v1 (malformed, kindless or oversize requests the typed client cannot send).

use crate::Target;

/// The codec of raw bytes: encodes and decodes nothing.
#[derive(Clone, Copy, Default)]
pub struct Raw;

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        prost::bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

impl tonic::codec::Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

/// Sends `body` as a Cluster.Apply request and returns the answer's bytes or the refusal.
pub fn raw_apply(target: &Target, body: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    let target = target.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let channel = target.channel().await.unwrap_or_else(|e| panic!("{e}"));
        let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(usize::MAX);
        grpc.ready().await.expect("channel ready");
        let path =
            tonic::codegen::http::uri::PathAndQuery::from_static("/twinset.v1.Cluster/Apply");
        grpc.unary(tonic::Request::new(body), path, Raw)
            .await
            .map(tonic::Response::into_inner)
    })
}
