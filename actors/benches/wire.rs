//! Benchmarks of the pure wire layer on a realistic mesh-link stream
//! (PROTOCOL 2.1, 2.2, 2.4): ~10 000 `[D]` frames from 6 nodes, each with a
//! GPS, TMP, HUM and BAT entry, framed back to back.
//!
//! Values are chosen so that escapes happen the way they do on a real link
//! (negative temperatures and longitudes give 0xFF/0xFE bytes, a node
//! address with a 0xFA low byte, full humidity 0xFF...); the share of
//! escaped bytes is printed before the benchmarks run.
//!
//! Run: `cargo bench -p switchyard-actors --bench wire -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use switchyard_actors::wire::data_types::{DataTypes, Decoded};
use switchyard_actors::wire::frame::{encode_frame, FrameCodec, FrameItem, ESC};
use switchyard_actors::wire::mesh::{DataEntry, RootMessage};
use tokio_util::codec::Decoder;

const FRAMES: usize = 10_000;
const NODES: [u16; 6] = [0x0001, 0x0002, 0x00FA, 0x0105, 0x1FFE, 0xA0FF];

/// A small deterministic PRNG (xorshift64*), so every run sees the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

/// Frame contents of the stream: `[D]` frames with GPS, TMP, HUM, BAT.
fn contents() -> Vec<Vec<u8>> {
    let types = DataTypes::builtin();
    let mut rng = Rng(0x5EED_CAFE_F00D_D00D);
    // Each node wanders around its own spot; some sit west of Greenwich
    // and south of the equator (negative i24: 0xFF.. bytes), some in the
    // cold (negative i16 temperatures).
    let homes: [(f64, f64, f64); 6] = [
        (24.9384, 60.1699, -5.0),
        (-0.1276, 51.5072, 12.0),
        (-58.3816, -34.6037, 24.0),
        (139.6917, 35.6895, 18.0),
        (-0.0005, -0.0003, -0.5),
        (151.2093, -33.8688, 30.0),
    ];
    (0..FRAMES)
        .map(|i| {
            let n = i % NODES.len();
            let (lon, lat, temp) = homes[n];
            let value = |name: &str, v: serde_json::Value| {
                let raw = types.encode(name, &v).expect("value in range");
                DataEntry::new(name, raw)
            };
            let jitter = |rng: &mut Rng, span: i64| rng.range(-span, span) as f64 * 1e-4;
            let entries = vec![
                value(
                    "GPS",
                    serde_json::json!({
                        "lon": lon + jitter(&mut rng, 50),
                        "lat": lat + jitter(&mut rng, 50),
                    }),
                ),
                value(
                    "TMP",
                    serde_json::json!({"celsius": temp + rng.range(-300, 300) as f64 / 100.0}),
                ),
                value("HUM", serde_json::json!({"percent": rng.range(20, 255)})),
                value(
                    "BAT",
                    serde_json::json!({"millivolts": rng.range(3300, 4200)}),
                ),
            ];
            RootMessage::Data {
                node: NODES[n],
                entries,
            }
            .encode()
        })
        .collect()
}

fn stream(contents: &[Vec<u8>]) -> BytesMut {
    let mut wire = BytesMut::new();
    for c in contents {
        encode_frame(c, &mut wire);
    }
    wire
}

fn benches(c: &mut Criterion) {
    let contents = contents();
    let wire = stream(&contents).freeze();
    let content_bytes: usize = contents.iter().map(Vec::len).sum();
    let escaped = contents.iter().flatten().filter(|&&b| b >= ESC).count();
    println!(
        "wire stream: {} frames, {} content bytes, {} wire bytes; {} content bytes escaped ({:.2}% of content, {:.2}% of wire bytes are escape prefixes)",
        contents.len(),
        content_bytes,
        wire.len(),
        escaped,
        100.0 * escaped as f64 / content_bytes as f64,
        100.0 * escaped as f64 / wire.len() as f64,
    );

    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("frame_decode", |b| {
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut buf| {
                let mut codec = FrameCodec::default();
                let mut frames = 0usize;
                while let Some(item) = codec.decode(&mut buf).expect("never fails") {
                    if let FrameItem::Frame(f) = item {
                        black_box(&f);
                        frames += 1;
                    }
                }
                assert_eq!(frames, FRAMES);
                frames
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("frame_encode", |b| {
        let mut out = BytesMut::with_capacity(wire.len());
        b.iter(|| {
            out.clear();
            for c in &contents {
                encode_frame(black_box(c), &mut out);
            }
            out.len()
        })
    });

    let n_entries = FRAMES * 4;
    println!("data_payload_parse: {FRAMES} frames, {n_entries} entries; elements = frames");
    g.throughput(Throughput::Elements(contents.len() as u64));
    let types = DataTypes::builtin();
    g.bench_function("data_payload_parse", |b| {
        b.iter(|| {
            let mut values = 0usize;
            for c in &contents {
                let Ok(RootMessage::Data { entries, .. }) = RootMessage::parse(black_box(c)) else {
                    panic!("not a [D] frame")
                };
                for e in &entries {
                    if let Decoded::Value(v) = types.decode(&e.data_type, &e.raw) {
                        black_box(&v);
                        values += 1;
                    }
                }
            }
            assert_eq!(values, n_entries);
            values
        })
    });
    g.finish();
}

criterion_group!(wire, benches);
criterion_main!(wire);
