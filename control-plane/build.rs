//! Compiles `proto/openapi_v2.proto` (gnostic's OpenAPI v2 messages, the subset
//! `/openapi/v2` answers with in protobuf) with protox, no protoc needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = "proto/openapi_v2.proto";
    println!("cargo:rerun-if-changed={file}");
    let fds = protox::compile([file], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
