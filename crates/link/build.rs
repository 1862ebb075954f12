// The gRPC service is declared here rather than in a .proto file, so building needs no
// protoc; the message is a hand-written prost type (src/lib.rs).
fn main() {
    let connect = tonic_build::manual::Method::builder()
        .name("link")
        .route_name("Link")
        .input_type("crate::LinkFrame")
        .output_type("crate::LinkFrame")
        .codec_path("tonic::codec::ProstCodec")
        .client_streaming()
        .server_streaming()
        .build();
    let service =
        tonic_build::manual::Service::builder().name("EdgeLink").package("onramp.link").method(connect).build();
    tonic_build::manual::Builder::new().compile(&[service]);
}
