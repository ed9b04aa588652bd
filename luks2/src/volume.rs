//! The data segment (what a dm-crypt table or the userspace decryptor needs) and a streaming
//! userspace decryptor.
//!
//! Like luks.go's `Volume`, [`DataSegment`] is plain data: where the ciphertext starts, how long
//! it is, the cipher, the IV offset and the sector size. The binary turns it into a dm-crypt
//! table; [`Decryptor`] decrypts it in userspace in bounded memory.

use crate::cipher::{CipherSpec, SectorCipher};
use crate::error::{read_exact_at, Error, IoError};
use crate::header::Header;
use crate::secret::{SecretBuf, VolumeKey};
use std::io::{Read, Seek, Write};

pub(crate) mod error;
pub use error::VolumeError;

/// Where and how the data is encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSegment {
    /// Byte offset of the ciphertext on the data device.
    pub offset: u64,
    /// Length in bytes, or `None` for "to the end of the device".
    pub size: Option<u64>,
    /// dm-crypt cipher name (`aes-xts-plain64`).
    pub encryption: String,
    /// Volume key length in bytes.
    pub key_size: usize,
    /// Encryption sector size in bytes.
    pub sector_size: u32,
    /// IV offset in 512-byte units used for mapping and decryption: 0 for LUKS1 and for a
    /// LUKS2 data segment (as cryptsetup maps it; the stored `iv_tweak` is not used).
    pub iv_tweak: u64,
}

impl DataSegment {
    /// The data segment of `header`, refusing what cannot be mapped faithfully: mandatory
    /// requirements, integrity, several segments, non-crypt segments.
    pub fn of(header: &Header) -> Result<DataSegment, Error> {
        match header {
            Header::Luks1(h) => {
                let key_size = usize::try_from(h.key_bytes).unwrap_or(usize::MAX);
                let spec = CipherSpec::from_luks1(&h.cipher_name, &h.cipher_mode, key_size);
                let encryption = match &spec {
                    Ok(_) => format!("{}-{}", h.cipher_name, h.cipher_mode),
                    Err(e) => return Err(e.clone().into()),
                };
                Ok(DataSegment {
                    offset: u64::from(h.payload_offset) * 512,
                    size: None,
                    encryption,
                    key_size,
                    sector_size: 512,
                    iv_tweak: 0,
                })
            }
            Header::Luks2(h) => {
                let md = &h.metadata;
                if !md.config.requirements_mandatory.is_empty() {
                    return Err(crate::unlock::UnlockError::RequirementRefused(
                        md.config.requirements_mandatory.clone(),
                    )
                    .into());
                }
                let data: Vec<_> = md
                    .segments
                    .values()
                    .filter(|s| !s.flags.iter().any(|f| f.starts_with("backup-")))
                    .collect();
                let seg = match data.as_slice() {
                    [] => return Err(Error::Volume(VolumeError::NoDataSegment)),
                    [one] => *one,
                    more => return Err(Error::Volume(VolumeError::MultipleSegments(more.len()))),
                };
                if seg.type_name != "crypt" {
                    return Err(Error::Volume(VolumeError::UnsupportedSegment(
                        seg.type_name.clone(),
                    )));
                }
                if let Some(i) = &seg.integrity {
                    return Err(Error::Volume(VolumeError::IntegritySegment(i.clone())));
                }
                // The key size of the segment is the one of the keyslots bound to its digest.
                let seg_id = md
                    .segments
                    .iter()
                    .find(|(_, s)| std::ptr::eq(*s, seg))
                    .map(|(id, _)| *id);
                let key_size = md
                    .digests
                    .values()
                    .filter(|d| seg_id.is_some_and(|id| d.segments.contains(&id)))
                    .flat_map(|d| d.keyslots.iter())
                    .filter_map(|k| md.keyslots.get(k))
                    .map(|k| k.key_size)
                    .next()
                    .ok_or(Error::Volume(VolumeError::NoDataSegment))?;
                let key_size = usize::try_from(key_size).unwrap_or(usize::MAX);
                if !(seg.sector_size.is_power_of_two() && (512..=4096).contains(&seg.sector_size)) {
                    return Err(Error::Volume(VolumeError::SectorSize(seg.sector_size)));
                }
                CipherSpec::parse(&seg.encryption, key_size)?;
                Ok(DataSegment {
                    offset: seg.offset,
                    size: match seg.size {
                        crate::metadata::SegmentSize::Dynamic => None,
                        crate::metadata::SegmentSize::Fixed(n) => Some(n),
                    },
                    encryption: seg.encryption.clone(),
                    key_size,
                    sector_size: seg.sector_size,
                    // cryptsetup activates a LUKS2 data segment with IV offset 0 whatever its
                    // `iv_tweak` says (`crypt_get_iv_offset()` is 0 for LUKS2; only the
                    // multi-segment tables of a reencryption use `iv_tweak`). We map and
                    // decrypt the same plaintext as cryptsetup on the same volume.
                    iv_tweak: 0,
                })
            }
        }
    }

    /// The segment length on a data device of `device_size` bytes (dynamic size resolved),
    /// checked against the device and the sector size.
    pub fn length_on(&self, device_size: u64) -> Result<u64, Error> {
        let avail = device_size.checked_sub(self.offset).ok_or(Error::Volume(
            VolumeError::DeviceTooSmall {
                device_size,
                data_offset: self.offset,
            },
        ))?;
        let len = match self.size {
            None => avail,
            Some(n) if n <= avail => n,
            Some(_) => {
                return Err(Error::Volume(VolumeError::DeviceTooSmall {
                    device_size,
                    data_offset: self.offset,
                }))
            }
        };
        if len % u64::from(self.sector_size) != 0 {
            return Err(Error::Volume(VolumeError::Misaligned {
                length: len,
                sector_size: self.sector_size,
            }));
        }
        Ok(len)
    }
}

/// Decrypts a data segment in userspace.
pub struct Decryptor {
    segment: DataSegment,
    cipher: SectorCipher,
}

/// Bytes decrypted per read in [`Decryptor::copy`].
const CHUNK: usize = 1 << 20;

impl Decryptor {
    /// Keys a decryptor for `segment` with the volume key.
    pub fn new(segment: DataSegment, key: &VolumeKey) -> Result<Decryptor, Error> {
        let spec = CipherSpec::parse(&segment.encryption, key.len())?;
        let cipher = SectorCipher::new(&spec, key.as_bytes())?;
        Ok(Decryptor { segment, cipher })
    }

    /// The segment being decrypted.
    pub fn segment(&self) -> &DataSegment {
        &self.segment
    }

    /// Decrypts `buf` in place; it holds the ciphertext found `pos` bytes into the segment.
    /// `pos` and `buf.len()` must be multiples of the sector size.
    pub fn decrypt_at(&self, pos: u64, buf: &mut [u8]) -> Result<(), Error> {
        let first_iv = self.segment.iv_tweak.wrapping_add(pos / 512);
        let sector = usize::try_from(self.segment.sector_size).unwrap_or(usize::MAX);
        self.cipher.decrypt(buf, sector, first_iv)?;
        Ok(())
    }

    /// Streams the whole plaintext of the segment from the data device `src` (of
    /// `device_size` bytes) to `out`, in constant memory. Returns the bytes written.
    pub fn copy<R: Read + Seek, W: Write>(
        &self,
        src: &mut R,
        device_size: u64,
        out: &mut W,
    ) -> Result<u64, Error> {
        let len = self.segment.length_on(device_size)?;
        let sector = u64::from(self.segment.sector_size);
        let chunk = (CHUNK as u64 / sector).max(1) * sector;
        let mut buf = SecretBuf::zeroed(usize::try_from(chunk.min(len)).unwrap_or(CHUNK));
        let mut pos = 0u64;
        while pos < len {
            let n = usize::try_from((len - pos).min(chunk)).unwrap_or(CHUNK);
            let slice = buf
                .as_mut_bytes()
                .get_mut(..n)
                .ok_or_else(|| Error::Io(IoError::short("data chunk", pos)))?;
            read_exact_at(src, self.segment.offset + pos, slice, "data segment")?;
            self.decrypt_at(pos, slice)?;
            out.write_all(slice)
                .map_err(|e| Error::Volume(VolumeError::Write(e.to_string())))?;
            pos += n as u64;
        }
        out.flush()
            .map_err(|e| Error::Volume(VolumeError::Write(e.to_string())))?;
        Ok(len)
    }
}
