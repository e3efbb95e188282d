//! The messages of `collector/proto/monitoring.proto` that the server decodes and encodes,
//! written out with prost's derive (no code generation step, no protoc at build time). A test
//! reads the .proto and checks every field name, type and number here against it.

#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusRequest {
    #[prost(string, tag = "1")]
    pub service_name: String,
    #[prost(string, tag = "2")]
    pub service_type: String,
    #[prost(string, tag = "3")]
    pub agent_id: String,
    #[prost(string, tag = "4")]
    pub poller_id: String,
    #[prost(string, tag = "5")]
    pub details: String,
    #[prost(int32, tag = "6")]
    pub port: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusResponse {
    #[prost(bool, tag = "1")]
    pub available: bool,
    #[prost(bytes = "vec", tag = "2")]
    pub message: Vec<u8>,
    #[prost(string, tag = "3")]
    pub service_name: String,
    #[prost(string, tag = "4")]
    pub service_type: String,
    #[prost(int64, tag = "5")]
    pub response_time: i64,
    #[prost(string, tag = "6")]
    pub agent_id: String,
    #[prost(string, tag = "7")]
    pub poller_id: String,
}

pub const SERVICE: &str = "monitoring.AgentService";
pub const GET_STATUS: &str = "/monitoring.AgentService/GetStatus";
/// Methods of the service that answer UNIMPLEMENTED, as the Go checker's embedded
/// `UnimplementedAgentServiceServer` does.
pub const UNIMPLEMENTED: [&str; 2] = ["GetResults", "StreamResults"];

#[cfg(test)]
mod tests {
    /// (message, field, proto type, number) as declared in collector/proto/monitoring.proto.
    fn declared() -> Vec<(String, String, String, u32)> {
        let text = include_str!("../../proto/monitoring.proto");
        let mut out = Vec::new();
        let mut message = String::new();
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("message ") {
                message = rest.trim_end_matches(" {").trim().to_string();
            } else if let Some((decl, num)) = line.split_once(" = ")
                && !line.starts_with("//")
                && !message.is_empty()
            {
                let words: Vec<&str> = decl.split_whitespace().collect();
                let num: u32 = num.trim_end_matches(';').trim().parse().unwrap();
                out.push((message.clone(), words[words.len() - 1].into(), words[words.len() - 2].into(), num));
            }
        }
        out
    }

    #[test]
    fn the_rust_messages_match_the_proto() {
        let d = declared();
        let of = |m: &str| -> Vec<(String, String, u32)> {
            d.iter().filter(|f| f.0 == m).map(|f| (f.1.clone(), f.2.clone(), f.3)).collect()
        };
        let s = |v: &[(&str, &str, u32)]| -> Vec<(String, String, u32)> {
            v.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), *c)).collect()
        };
        assert_eq!(
            of("StatusRequest"),
            s(&[
                ("service_name", "string", 1),
                ("service_type", "string", 2),
                ("agent_id", "string", 3),
                ("poller_id", "string", 4),
                ("details", "string", 5),
                ("port", "int32", 6)
            ])
        );
        assert_eq!(
            of("StatusResponse"),
            s(&[
                ("available", "bool", 1),
                ("message", "bytes", 2),
                ("service_name", "string", 3),
                ("service_type", "string", 4),
                ("response_time", "int64", 5),
                ("agent_id", "string", 6),
                ("poller_id", "string", 7)
            ])
        );
        // And the encoding prost derives agrees with those numbers on the wire.
        use prost::Message;
        let r = super::StatusResponse { available: true, response_time: 5, ..Default::default() };
        assert_eq!(r.encode_to_vec(), vec![0x08, 0x01, 0x28, 0x05]);
    }
}
