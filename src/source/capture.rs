//! Live capture with cpal (ALSA on Linux): any rate and channel count the device offers (its
//! default input configuration unless `rate`/`channels` ask for another supported one).
//!
//! The data callback converts to f32 while copying into the ring (`push_live`): no locks, no
//! allocation. The error callback (not real-time) records a fatal error: a device that
//! disappears (USB mic unplugged) ends the run with a non-zero exit so systemd restarts it.

use super::{push_live, ring, InputSpec, Running, SourceError, SourceInfo, SourceShared};
use anyhow::{anyhow, bail, Context, Result};
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample, StreamConfig};
use rtrb::{Consumer, Producer};
use std::sync::Arc;

/// Keeps the cpal stream alive (it is not `Send`: it stays on the thread that opened it).
pub struct CaptureStream {
    _stream: cpal::Stream,
}

/// One input device as `sfxtag devices` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceDesc {
    pub index: usize,
    pub name: String,
    pub is_default: bool,
    /// `rate Hz × channels ch format` of the default input configuration.
    pub default_config: Option<String>,
    /// Supported ranges, e.g. `8000–192000 Hz, 2 ch, I16`.
    pub supported: Vec<String>,
}

fn host() -> cpal::Host {
    cpal::default_host()
}

/// Lists the input devices.
pub fn list() -> Result<Vec<DeviceDesc>> {
    let host = host();
    let default_name = host.default_input_device().and_then(|d| d.name().ok());
    let devices = host
        .input_devices()
        .context("cannot enumerate audio input devices")?;
    let mut out = Vec::new();
    for (index, d) in devices.enumerate() {
        let name = d.name().unwrap_or_else(|_| "(unnamed)".into());
        let default_config = d.default_input_config().ok().map(|c| {
            format!(
                "{} Hz × {} ch {:?}",
                c.sample_rate().0,
                c.channels(),
                c.sample_format()
            )
        });
        let supported = d
            .supported_input_configs()
            .map(|it| {
                it.map(|r| {
                    format!(
                        "{}–{} Hz, {} ch, {:?}",
                        r.min_sample_rate().0,
                        r.max_sample_rate().0,
                        r.channels(),
                        r.sample_format()
                    )
                })
                .collect()
            })
            .unwrap_or_default();
        out.push(DeviceDesc {
            index,
            is_default: default_name.as_deref() == Some(name.as_str()),
            name,
            default_config,
            supported,
        });
    }
    Ok(out)
}

fn find(spec: &InputSpec) -> Result<cpal::Device> {
    let host = host();
    let names = || {
        list()
            .map(|l| {
                if l.is_empty() {
                    "no input devices at all (is a microphone connected? see `arecord -l`)"
                        .to_string()
                } else {
                    l.iter()
                        .map(|d| format!("  {}: {}", d.index, d.name))
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            })
            .unwrap_or_else(|e| format!("(cannot list devices: {e})"))
    };
    match spec {
        InputSpec::DeviceName(n) if n == "default" => {
            host.default_input_device().ok_or_else(|| {
                anyhow!(
                    "no default audio input device (no microphone?). Available inputs:\n{}",
                    names()
                )
            })
        }
        InputSpec::DeviceName(n) => {
            let devices: Vec<cpal::Device> = host
                .input_devices()
                .context("cannot enumerate audio input devices")?
                .collect();
            if let Some(d) = devices.iter().find(|d| d.name().ok().as_deref() == Some(n)) {
                return Ok(d.clone());
            }
            let partial: Vec<&cpal::Device> = devices
                .iter()
                .filter(|d| d.name().is_ok_and(|x| x.contains(n.as_str())))
                .collect();
            match partial.as_slice() {
                [d] => Ok((*d).clone()),
                [] => bail!(
                    "no audio input device named '{n}'. Available inputs (`sfxtag devices`):\n{}",
                    names()
                ),
                _ => bail!(
                    "'{n}' matches several input devices; give the full name or the index:\n{}",
                    names()
                ),
            }
        }
        InputSpec::DeviceIndex(i) => host
            .input_devices()
            .context("cannot enumerate audio input devices")?
            .nth(*i)
            .ok_or_else(|| {
                anyhow!(
                    "there is no audio input device {i}. Available inputs:\n{}",
                    names()
                )
            }),
        _ => bail!("not a capture device: {spec:?}"),
    }
}

fn build<T>(
    device: &cpal::Device,
    config: &StreamConfig,
    mut producer: Producer<f32>,
    shared: Arc<SourceShared>,
) -> Result<cpal::Stream, cpal::BuildStreamError>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = config.channels as usize;
    let cb_shared = shared.clone();
    device.build_input_stream(
        config,
        move |data: &[T], _: &cpal::InputCallbackInfo| {
            push_live(
                &mut producer,
                data.iter().map(|&s| s.to_sample::<f32>()),
                channels,
                &cb_shared,
            );
        },
        move |err| shared.fail(stream_error(err)),
        None,
    )
}

/// What a capture error means for the user. cpal's ALSA backend reports a vanished device as a
/// backend error (poll's POLLERR, or ENODEV from the driver), not as `DeviceNotAvailable`.
fn stream_error(err: cpal::StreamError) -> SourceError {
    let gone = match &err {
        cpal::StreamError::DeviceNotAvailable => true,
        cpal::StreamError::BackendSpecific { err } => {
            let d = &err.description;
            d.contains("POLLERR") || d.contains("ENODEV") || d.contains("No such device")
        }
    };
    if gone {
        SourceError::DeviceGone(Arc::new(err))
    } else {
        SourceError::Capture(Arc::new(err))
    }
}

/// Opens and starts capturing from the device `spec` names.
pub fn open(
    spec: &InputSpec,
    want_rate: Option<u32>,
    want_channels: Option<u16>,
    ring_s: f64,
    shared: Arc<SourceShared>,
) -> Result<(SourceInfo, Consumer<f32>, Running)> {
    let device = find(spec)?;
    let name = device.name().unwrap_or_else(|_| "(unnamed)".into());
    let default = device
        .default_input_config()
        .with_context(|| format!("input device '{name}' offers no usable configuration"))?;
    let mut format = default.sample_format();
    let mut config: StreamConfig = default.config();
    if want_rate.is_some() || want_channels.is_some() {
        let rate = want_rate.unwrap_or(config.sample_rate.0);
        let ch = want_channels.unwrap_or(config.channels);
        let found = device
            .supported_input_configs()
            .with_context(|| format!("cannot query input device '{name}'"))?
            .find(|r| {
                r.channels() == ch
                    && r.min_sample_rate().0 <= rate
                    && rate <= r.max_sample_rate().0
            })
            .ok_or_else(|| {
                anyhow!("input device '{name}' does not support {rate} Hz × {ch} channels (see `sfxtag devices`)")
            })?
            .with_sample_rate(cpal::SampleRate(rate));
        format = found.sample_format();
        config = found.config();
    }
    let rate = config.sample_rate.0;
    let channels = config.channels as usize;
    let (producer, consumer) = ring(rate, channels, ring_s);
    let stream = match format {
        SampleFormat::F32 => build::<f32>(&device, &config, producer, shared),
        SampleFormat::I16 => build::<i16>(&device, &config, producer, shared),
        SampleFormat::I32 => build::<i32>(&device, &config, producer, shared),
        SampleFormat::U16 => build::<u16>(&device, &config, producer, shared),
        SampleFormat::U8 => build::<u8>(&device, &config, producer, shared),
        SampleFormat::I8 => build::<i8>(&device, &config, producer, shared),
        SampleFormat::F64 => build::<f64>(&device, &config, producer, shared),
        other => {
            bail!("input device '{name}' uses sample format {other:?}, which sfxtag does not read")
        }
    }
    .with_context(|| format!("cannot open input device '{name}'"))?;
    stream
        .play()
        .with_context(|| format!("cannot start capturing from '{name}'"))?;
    Ok((
        SourceInfo {
            name: format!("alsa:{name}"),
            rate,
            channels,
            lossless: false,
        },
        consumer,
        Running::Capture(CaptureStream { _stream: stream }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(d: &str) -> cpal::StreamError {
        cpal::StreamError::BackendSpecific {
            err: cpal::BackendSpecificError {
                description: d.into(),
            },
        }
    }

    #[test]
    fn a_vanished_device_is_named_as_such() {
        for e in [
            cpal::StreamError::DeviceNotAvailable,
            backend("`alsa::poll()` returned POLLERR"),
            backend("ALSA function 'snd_pcm_avail' failed with error 'ENODEV: No such device'"),
        ] {
            let text = e.to_string();
            let err = stream_error(e);
            assert!(matches!(err, SourceError::DeviceGone(_)), "{text}");
            assert!(err
                .to_string()
                .starts_with("the audio input device disappeared"));
            let cause = std::error::Error::source(&err).unwrap().to_string();
            assert_eq!(cause, text, "the cause is kept");
        }
        let other = stream_error(backend("snd_pcm_readi failed: EIO"));
        assert!(matches!(other, SourceError::Capture(_)), "{other}");
    }
}
