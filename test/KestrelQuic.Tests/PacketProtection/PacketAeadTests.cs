using System.Text;
using KestrelQuic.Crypto;
using KestrelQuic.PacketProtection;
using KestrelQuic.Protocol;

namespace KestrelQuic.Tests.PacketProtection;

public sealed class PacketAeadTests
{
    public static TheoryData<CipherSuite> Suites => new()
    {
        CipherSuite.Aes128GcmSha256, CipherSuite.Aes256GcmSha384, CipherSuite.ChaCha20Poly1305Sha256,
    };

    private static PacketProtectionKeys RandomKeys(CipherSuite suite, int seed, uint version = QuicVersion.Version1)
    {
        byte[] secret = new byte[CipherSuiteInfo.HashLength(suite)];
        new Random(seed).NextBytes(secret);
        return PacketProtectionKeys.FromSecret(suite, secret, version);
    }

    // A short-header packet: first byte, 8-byte DCID, 2-byte packet number, then the payload.
    private static byte[] BuildShortPacket(PacketProtectionKeys keys, long packetNumber, byte[] payload, out int headerLength)
    {
        const int pnOffset = 9;
        const int pnLength = 2;
        headerLength = pnOffset + pnLength;
        byte[] packet = new byte[headerLength + payload.Length + 16];
        packet[0] = 0x40 | (pnLength - 1);
        for (int i = 1; i < pnOffset; i++) packet[i] = (byte)(0xa0 + i);
        PacketNumberEncoding.Write(packet.AsSpan(pnOffset), packetNumber, pnLength);
        payload.CopyTo(packet, headerLength);
        int length = PacketProtector.Protect(keys, packet, pnOffset, pnLength, payload.Length, packetNumber);
        Assert.Equal(packet.Length, length);
        return packet;
    }

    [Theory]
    [MemberData(nameof(Suites))]
    public void ProtectUnprotect_RoundTrip(CipherSuite suite)
    {
        using PacketProtectionKeys keys = RandomKeys(suite, 1);
        byte[] payload = Encoding.ASCII.GetBytes("hello, QUIC packet protection");
        byte[] packet = BuildShortPacket(keys, 1234, payload, out int headerLength);
        Assert.NotEqual(payload, packet.AsSpan(headerLength, payload.Length).ToArray());

        Assert.True(PacketProtector.TryRemoveHeaderProtection(keys.HeaderProtection, packet, 9, 1200, out long pn, out int pnLength));
        Assert.Equal(1234, pn);
        Assert.Equal(2, pnLength);
        Assert.True(PacketProtector.TryDecryptPayload(keys.Aead, packet, headerLength, pn, out int payloadLength));
        Assert.Equal(payload, packet.AsSpan(headerLength, payloadLength).ToArray());
        Assert.Equal(1, keys.EncryptedPackets);
        Assert.Equal(0, keys.FailedDecryptions);
    }

    [Theory]
    [MemberData(nameof(Suites))]
    public void Tamper_AnyByte_FailsAuthentication(CipherSuite suite)
    {
        using PacketProtectionKeys keys = RandomKeys(suite, 2);
        byte[] payload = new byte[40];
        new Random(3).NextBytes(payload);
        byte[] original = BuildShortPacket(keys, 77, payload, out int headerLength);
        int failures = 0;
        for (int i = 0; i < original.Length; i++)
        {
            byte[] packet = (byte[])original.Clone();
            packet[i] ^= 0x04;
            if (PacketProtector.TryRemoveHeaderProtection(keys.HeaderProtection, packet, 9, 76, out long pn, out int pnLength))
            {
                Assert.False(PacketProtector.TryDecryptPayload(keys.Aead, packet, 9 + pnLength, pn, out int payloadLength));
                Assert.Equal(0, payloadLength);
                failures++;
            }
        }

        Assert.Equal(original.Length, failures);
        Assert.Equal(original.Length, keys.FailedDecryptions);
    }

    [Theory]
    [MemberData(nameof(Suites))]
    public void TryOpen_WrongPacketNumberOrAssociatedData_False(CipherSuite suite)
    {
        using PacketProtectionKeys keys = RandomKeys(suite, 4);
        byte[] ad = [1, 2, 3];
        byte[] data = [9, 8, 7, 6, 5];
        byte[] tag = new byte[16];
        keys.Aead.Seal(10, ad, data, tag);

        Assert.False(keys.Aead.TryOpen(11, ad, (byte[])data.Clone(), tag));
        Assert.False(keys.Aead.TryOpen(10, [1, 2, 4], (byte[])data.Clone(), tag));
        Assert.False(keys.Aead.TryOpen(10, ad, (byte[])data.Clone(), tag.AsSpan(0, 15)));
        Assert.True(keys.Aead.TryOpen(10, ad, data, tag));
        Assert.Equal(new byte[] { 9, 8, 7, 6, 5 }, data);
        Assert.Equal(3, keys.FailedDecryptions);
    }

    [Theory]
    [MemberData(nameof(Suites))]
    public void Truncation_AtEveryOffset_ReturnsFalseWithoutThrowing(CipherSuite suite)
    {
        using PacketProtectionKeys keys = RandomKeys(suite, 5);
        byte[] original = BuildShortPacket(keys, 5, new byte[30], out _);
        for (int length = 0; length < original.Length; length++)
        {
            byte[] packet = original.AsSpan(0, length).ToArray();
            if (length < 1) continue;
            bool ok = PacketProtector.TryRemoveHeaderProtection(keys.HeaderProtection, packet, 9, 4, out long pn, out int pnLength)
                && PacketProtector.TryDecryptPayload(keys.Aead, packet, 9 + pnLength, pn, out _);
            Assert.False(ok);
        }
    }

    [Fact]
    public void RandomGarbage_NeverThrows()
    {
        using PacketProtectionKeys keys = RandomKeys(CipherSuite.Aes128GcmSha256, 6);
        var random = new Random(12345);
        for (int i = 0; i < 2000; i++)
        {
            byte[] packet = new byte[random.Next(1, 100)];
            random.NextBytes(packet);
            int pnOffset = random.Next(1, 30);
            if (PacketProtector.TryRemoveHeaderProtection(keys.HeaderProtection, packet, pnOffset, random.Next(-1, 1000), out long pn, out int pnLength))
            {
                Assert.InRange(pnLength, 1, 4);
                Assert.False(PacketProtector.TryDecryptPayload(keys.Aead, packet, pnOffset + pnLength, pn, out _));
            }
        }
    }

    [Theory]
    [MemberData(nameof(Suites))]
    public void NextKeyPhase_NewKeysSameHeaderProtection(CipherSuite suite)
    {
        using PacketProtectionKeys phase0 = RandomKeys(suite, 7);
        using PacketProtectionKeys phase1 = phase0.NextKeyPhase();
        using PacketProtectionKeys phase2 = phase1.NextKeyPhase();

        Assert.Same(phase0.HeaderProtection, phase1.HeaderProtection);
        Assert.Same(phase0.HeaderProtection, phase2.HeaderProtection);
        Assert.NotEqual(phase0.Secret, phase1.Secret);
        Assert.NotEqual(phase1.Secret, phase2.Secret);
        Assert.Equal(phase0.Secret.Length, phase1.Secret.Length);
        Assert.Equal(suite, phase1.Suite);
        Assert.Equal(phase0.Version, phase1.Version);

        byte[] secret = HkdfLabel.Expand(CipherSuiteInfo.Hash(suite), phase0.Secret, "quic ku"u8, default, CipherSuiteInfo.HashLength(suite));
        Assert.Equal(secret, phase1.Secret);

        int keyLength = CipherSuiteInfo.KeyLength(suite);
        byte[] key0 = new byte[keyLength], key1 = new byte[keyLength], iv0 = new byte[12], iv1 = new byte[12], hp0 = new byte[keyLength], hp1 = new byte[keyLength];
        PacketProtectionKeys.DeriveKeyMaterial(suite, phase0.Secret, phase0.Version, key0, iv0, hp0);
        PacketProtectionKeys.DeriveKeyMaterial(suite, phase1.Secret, phase1.Version, key1, iv1, hp1);
        Assert.NotEqual(key0, key1);
        Assert.NotEqual(iv0, iv1);

        // A packet sealed in phase 1 opens with phase 1 keys only; header protection is shared.
        byte[] packet = BuildShortPacket(phase1, 50, new byte[20], out int headerLength);
        byte[] copy = (byte[])packet.Clone();
        Assert.True(PacketProtector.TryRemoveHeaderProtection(phase0.HeaderProtection, packet, 9, 49, out long pn, out _));
        Assert.False(PacketProtector.TryDecryptPayload(phase0.Aead, packet, headerLength, pn, out _));
        Assert.True(PacketProtector.TryRemoveHeaderProtection(phase1.HeaderProtection, copy, 9, 49, out pn, out _));
        Assert.True(PacketProtector.TryDecryptPayload(phase1.Aead, copy, headerLength, pn, out _));
    }

    [Fact]
    public void NextKeyPhase_Version2_UsesQuicv2KuLabel()
    {
        using PacketProtectionKeys v1 = RandomKeys(CipherSuite.Aes128GcmSha256, 8, QuicVersion.Version1);
        using PacketProtectionKeys v2 = RandomKeys(CipherSuite.Aes128GcmSha256, 8, QuicVersion.Version2);
        using PacketProtectionKeys next1 = v1.NextKeyPhase();
        using PacketProtectionKeys next2 = v2.NextKeyPhase();
        Assert.Equal(v1.Secret, v2.Secret);
        Assert.NotEqual(next1.Secret, next2.Secret);
        Assert.Equal(HkdfLabel.Expand(CipherSuiteInfo.Hash(CipherSuite.Aes128GcmSha256), v2.Secret, "quicv2 ku"u8, default, 32), next2.Secret);
    }

    [Fact]
    public void AeadLimits_MatchRfc9001Section6_6()
    {
        Assert.Equal(1L << 23, PacketProtectionKeys.ConfidentialityLimit(CipherSuite.Aes128GcmSha256));
        Assert.Equal(1L << 23, PacketProtectionKeys.ConfidentialityLimit(CipherSuite.Aes256GcmSha384));
        Assert.True(PacketProtectionKeys.ConfidentialityLimit(CipherSuite.ChaCha20Poly1305Sha256) >= 1L << 62);
        Assert.Equal(1L << 52, PacketProtectionKeys.IntegrityLimit(CipherSuite.Aes128GcmSha256));
        Assert.Equal(1L << 52, PacketProtectionKeys.IntegrityLimit(CipherSuite.Aes256GcmSha384));
        Assert.Equal(1L << 36, PacketProtectionKeys.IntegrityLimit(CipherSuite.ChaCha20Poly1305Sha256));
    }

    [Fact]
    public void Labels_PerVersion()
    {
        Assert.Equal("quic key", Encoding.ASCII.GetString(PacketProtectionLabels.For(QuicVersion.Version1).Key));
        Assert.Equal("quic iv", Encoding.ASCII.GetString(PacketProtectionLabels.For(QuicVersion.Version1).Iv));
        Assert.Equal("quic hp", Encoding.ASCII.GetString(PacketProtectionLabels.For(QuicVersion.Version1).Hp));
        Assert.Equal("quic ku", Encoding.ASCII.GetString(PacketProtectionLabels.For(QuicVersion.Version1).Ku));
        Assert.Equal("quicv2 key", Encoding.ASCII.GetString(PacketProtectionLabels.For(QuicVersion.Version2).Key));
        Assert.Equal("quicv2 iv", Encoding.ASCII.GetString(PacketProtectionLabels.For(QuicVersion.Version2).Iv));
        Assert.Equal("quicv2 hp", Encoding.ASCII.GetString(PacketProtectionLabels.For(QuicVersion.Version2).Hp));
        Assert.Equal("quicv2 ku", Encoding.ASCII.GetString(PacketProtectionLabels.For(QuicVersion.Version2).Ku));
        Assert.Throws<ArgumentOutOfRangeException>(() => PacketProtectionLabels.For(0x0a0a0a0a));
        Assert.Throws<ArgumentOutOfRangeException>(() => InitialSecrets.Derive(0xff00001d, [1, 2, 3], out _, out _));
    }

    [Fact]
    public void Nonce_IsIvXorPacketNumber()
    {
        byte[] iv = Convert.FromHexString("000102030405060708090a0b");
        using var aead = PacketAead.Create(CipherSuite.Aes128GcmSha256, new byte[16], iv);
        byte[] nonce = new byte[12];
        aead.ComputeNonce(0, nonce);
        Assert.Equal(iv, nonce);
        aead.ComputeNonce(0x0102, nonce);
        Assert.Equal("000102030405060708090b09", Hex.Format(nonce));
        aead.ComputeNonce(0x3fffffffffffffffL, nonce);
        Assert.Equal("000102033bfaf9f8f7f6f5f4", Hex.Format(nonce));
    }

    [Fact]
    public void Create_RejectsBadLengths()
    {
        Assert.Throws<ArgumentException>(() => PacketAead.Create(CipherSuite.Aes128GcmSha256, new byte[32], new byte[12]));
        Assert.Throws<ArgumentException>(() => PacketAead.Create(CipherSuite.ChaCha20Poly1305Sha256, new byte[32], new byte[8]));
        Assert.Throws<ArgumentException>(() => PacketProtectionKeys.FromSecret(CipherSuite.Aes256GcmSha384, new byte[32], QuicVersion.Version1));
        using PacketProtectionKeys keys = RandomKeys(CipherSuite.Aes128GcmSha256, 9);
        // Packet number + payload shorter than 4 bytes cannot be sampled.
        Assert.Throws<ArgumentException>(() => PacketProtector.Protect(keys, new byte[64], 9, 1, 2, 0));
        Assert.Throws<ArgumentException>(() => PacketProtector.Protect(keys, new byte[20], 9, 1, 4, 0));
    }
}
