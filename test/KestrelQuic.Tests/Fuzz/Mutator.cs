using System.Buffers.Binary;

namespace KestrelQuic.Tests.Fuzz;

/// <summary>
/// Deterministic structure-unaware mutations of valid inputs: bit flips, interesting byte values, varint boundary
/// values, truncation, splicing with another corpus entry, duplication, insertion, deletion and length-field tampering
/// (1/2/3-byte big-endian and QUIC varint lengths). All randomness comes from the caller's <see cref="Random"/>, so a
/// seed reproduces the exact sequence of inputs.
/// </summary>
internal sealed class Mutator(int maxLength)
{
    private static readonly byte[] s_interestingBytes = [0x00, 0x01, 0x02, 0x3f, 0x40, 0x7f, 0x80, 0xbf, 0xc0, 0xfe, 0xff];

    // RFC 9000 §16 boundaries: the largest value of each length, its successor, and the maximum.
    private static readonly ulong[] s_varintBoundaries = [0, 1, 63, 64, 16383, 16384, (1UL << 30) - 1, 1UL << 30, (1UL << 62) - 1];

    private static readonly int[] s_lengthDeltas = [-1, 1, -2, 2, 16, int.MinValue, int.MaxValue];

    public int MaxLength { get; } = maxLength;

    /// <summary>Applies 1–4 stacked mutations to <paramref name="input"/>; <paramref name="corpus"/> feeds splices.</summary>
    public byte[] Mutate(byte[] input, Random random, IReadOnlyList<byte[]> corpus)
    {
        var data = new List<byte>(input);
        int count = 1 + random.Next(random.Next(2) == 0 ? 2 : 4);
        for (int i = 0; i < count; i++)
        {
            MutateOnce(data, random, corpus);
        }

        if (data.Count > MaxLength)
        {
            data.RemoveRange(MaxLength, data.Count - MaxLength);
        }

        return data.ToArray();
    }

    private static void MutateOnce(List<byte> data, Random random, IReadOnlyList<byte[]> corpus)
    {
        if (data.Count == 0)
        {
            data.Add((byte)random.Next(256));
            return;
        }

        int at = random.Next(data.Count);
        switch (random.Next(11))
        {
            case 0: // bit flip
                data[at] ^= (byte)(1 << random.Next(8));
                break;
            case 1: // byte set
                data[at] = random.Next(2) == 0 ? s_interestingBytes[random.Next(s_interestingBytes.Length)] : (byte)random.Next(256);
                break;
            case 2: // varint boundary value, overwriting or inserted, in the minimal or a longer encoding
                {
                    ulong value = s_varintBoundaries[random.Next(s_varintBoundaries.Length)];
                    byte[] encoded = EncodeVarInt(value, random.Next(3) == 0 ? 8 >> random.Next(4) : 0);
                    if (random.Next(2) == 0)
                    {
                        data.InsertRange(at, encoded);
                    }
                    else
                    {
                        Overwrite(data, at, encoded);
                    }

                    break;
                }

            case 3: // truncation
                data.RemoveRange(at, data.Count - at);
                break;
            case 4: // splice: our head, another input's tail
                {
                    byte[] other = corpus[random.Next(corpus.Count)];
                    if (other.Length > 0)
                    {
                        int from = random.Next(other.Length);
                        data.RemoveRange(at, data.Count - at);
                        data.AddRange(other.AsSpan(from).ToArray());
                    }

                    break;
                }

            case 5: // duplication of a chunk (repeated frames, fields, extensions)
                {
                    int length = 1 + random.Next(Math.Min(64, data.Count - at));
                    byte[] chunk = data.GetRange(at, length).ToArray();
                    int times = random.Next(8) == 0 ? 1 + random.Next(32) : 1;
                    for (int t = 0; t < times; t++)
                    {
                        data.InsertRange(at + length, chunk);
                    }

                    break;
                }

            case 6: // deletion of a chunk
                data.RemoveRange(at, 1 + random.Next(Math.Min(16, data.Count - at)));
                break;
            case 7: // insertion of random bytes
                {
                    byte[] bytes = new byte[1 + random.Next(8)];
                    random.NextBytes(bytes);
                    data.InsertRange(at, bytes);
                    break;
                }

            case 8: // big-endian length field tampering (TLS u8/u16/u24 vectors, handshake headers)
                {
                    int width = 1 + random.Next(3);
                    if (at + width > data.Count)
                    {
                        break;
                    }

                    long value = 0;
                    for (int i = 0; i < width; i++)
                    {
                        value = (value << 8) | data[at + i];
                    }

                    long max = (1L << (8 * width)) - 1;
                    value = TamperLength(value, max, data.Count - at - width, random);
                    for (int i = width - 1; i >= 0; i--)
                    {
                        data[at + i] = (byte)value;
                        value >>= 8;
                    }

                    break;
                }

            case 9: // varint length field tampering (QUIC frames, transport parameters, HTTP/3 and QPACK prefixes)
                {
                    int read = 1 << (data[at] >> 6);
                    if (at + read > data.Count)
                    {
                        break;
                    }

                    ulong value = data[at] & 0x3fUL;
                    for (int i = 1; i < read; i++)
                    {
                        value = (value << 8) | data[at + i];
                    }

                    long tampered = TamperLength((long)value, (1L << 62) - 1, data.Count - at - read, random);
                    data.RemoveRange(at, read);
                    data.InsertRange(at, EncodeVarInt((ulong)tampered, random.Next(2) == 0 ? read : 0));
                    break;
                }

            default: // 16/32-bit interesting values (versions, types, lengths)
                {
                    byte[] word = new byte[random.Next(2) == 0 ? 2 : 4];
                    uint v = random.Next(4) switch
                    {
                        0 => 0,
                        1 => uint.MaxValue,
                        2 => 0x6b3343cf, // QUIC v2
                        _ => (uint)random.Next(),
                    };
                    if (word.Length == 2)
                    {
                        BinaryPrimitives.WriteUInt16BigEndian(word, (ushort)v);
                    }
                    else
                    {
                        BinaryPrimitives.WriteUInt32BigEndian(word, v);
                    }

                    Overwrite(data, at, word);
                    break;
                }
        }
    }

    private static long TamperLength(long value, long max, int remaining, Random random)
    {
        long result = random.Next(3) switch
        {
            0 => remaining + random.Next(-2, 3), // the length of what follows, off by a little
            1 => value + s_lengthDeltas[random.Next(s_lengthDeltas.Length)] switch
            {
                int.MinValue => -value,
                int.MaxValue => max - value,
                int d => d,
            },
            _ => max - random.Next(2),
        };
        return Math.Clamp(result, 0, max);
    }

    private static void Overwrite(List<byte> data, int at, byte[] bytes)
    {
        for (int i = 0; i < bytes.Length; i++)
        {
            if (at + i < data.Count)
            {
                data[at + i] = bytes[i];
            }
            else
            {
                data.Add(bytes[i]);
            }
        }
    }

    /// <summary>QUIC varint with an optional forced encoded length (0 = minimal); values too large for it are truncated to its maximum.</summary>
    public static byte[] EncodeVarInt(ulong value, int forcedLength)
    {
        int length = forcedLength;
        if (length == 0)
        {
            length = value < 64 ? 1 : value < 16384 ? 2 : value < (1UL << 30) ? 4 : 8;
        }

        ulong max = (1UL << (8 * length - 2)) - 1;
        value = Math.Min(value, max);
        byte[] result = new byte[length];
        for (int i = length - 1; i >= 0; i--)
        {
            result[i] = (byte)value;
            value >>= 8;
        }

        result[0] |= length switch { 1 => 0x00, 2 => 0x40, 4 => 0x80, _ => 0xc0 };
        return result;
    }
}
