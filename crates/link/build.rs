// The gRPC services are declared here rather than in a .proto file, so building needs no
// protoc; the messages are hand-written prost types (src/lib.rs, src/gateway.rs).
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
    // Gateways dial core: one bidirectional stream per gateway.
    let gateway = tonic_build::manual::Method::builder()
        .name("session")
        .route_name("Session")
        .input_type("crate::gateway::GatewayFrame")
        .output_type("crate::gateway::GatewayFrame")
        .codec_path("tonic::codec::ProstCodec")
        .client_streaming()
        .server_streaming()
        .build();
    let gateway_service =
        tonic_build::manual::Service::builder().name("GatewayLink").package("onramp.link").method(gateway).build();
    tonic_build::manual::Builder::new().compile(&[service, gateway_service]);
}
