using System.Security.Cryptography;
using KestrelQuic.Crypto;
using KestrelQuic.PacketProtection;
using KestrelQuic.Protocol;

namespace KestrelQuic.Tests.PacketProtection;

/// <summary>Every sample of RFC 9001 Appendix A and RFC 9369 Appendix A, byte for byte, protect and unprotect.</summary>
public sealed class RfcSampleTests
{
    private const int InitialPacketNumberOffset = 18;

    public static TheoryData<uint> Versions => new() { QuicVersion.Version1, QuicVersion.Version2 };

    private sealed record Vectors(
        string Dcid, string InitialSecret, string ClientSecret, string ClientKey, string ClientIv, string ClientHp,
        string ServerSecret, string ServerKey, string ServerIv, string ServerHp,
        string ClientCrypto, string ClientHeader, string ClientSample, string ClientMask, string ClientProtectedHeader, string ClientPacket,
        string ServerPayload, string ServerHeader, string ServerSample, string ServerMask, string ServerProtectedHeader, string ServerPacket,
        string Retry, string RetrySecret, string RetryKey, string RetryNonce,
        string ChaChaSecret, string ChaChaKey, string ChaChaIv, string ChaChaHp, string ChaChaKu, string ChaChaNonce,
        string ChaChaHeader, string ChaChaCiphertext, string ChaChaSample, string ChaChaMask, string ChaChaProtectedHeader, string ChaChaPacket);

    private static Vectors For(uint version) => version == QuicVersion.Version1
        ? new Vectors(
            Rfc9001Vectors.ClientDestinationConnectionId, Rfc9001Vectors.InitialSecret, Rfc9001Vectors.ClientInitialSecret, Rfc9001Vectors.ClientKey,
            Rfc9001Vectors.ClientIv, Rfc9001Vectors.ClientHp, Rfc9001Vectors.ServerInitialSecret, Rfc9001Vectors.ServerKey, Rfc9001Vectors.ServerIv,
            Rfc9001Vectors.ServerHp, Rfc9001Vectors.ClientInitialCryptoFrame, Rfc9001Vectors.ClientInitialHeader, Rfc9001Vectors.ClientInitialSample,
            Rfc9001Vectors.ClientInitialMask, Rfc9001Vectors.ClientInitialProtectedHeader, Rfc9001Vectors.ClientInitialProtected,
            Rfc9001Vectors.ServerInitialPayload, Rfc9001Vectors.ServerInitialHeader, Rfc9001Vectors.ServerInitialSample, Rfc9001Vectors.ServerInitialMask,
            Rfc9001Vectors.ServerInitialProtectedHeader, Rfc9001Vectors.ServerInitialProtected, Rfc9001Vectors.RetryPacket, Rfc9001Vectors.RetrySecret,
            Rfc9001Vectors.RetryKey, Rfc9001Vectors.RetryNonce, Rfc9001Vectors.ChaChaSecret, Rfc9001Vectors.ChaChaKey, Rfc9001Vectors.ChaChaIv,
            Rfc9001Vectors.ChaChaHp, Rfc9001Vectors.ChaChaKu, Rfc9001Vectors.ChaChaNonce, Rfc9001Vectors.ChaChaUnprotectedHeader,
            Rfc9001Vectors.ChaChaPayloadCiphertext, Rfc9001Vectors.ChaChaSample, Rfc9001Vectors.ChaChaMask, Rfc9001Vectors.ChaChaProtectedHeader,
            Rfc9001Vectors.ChaChaPacket)
        : new Vectors(
            Rfc9369Vectors.ClientDestinationConnectionId, Rfc9369Vectors.InitialSecret, Rfc9369Vectors.ClientInitialSecret, Rfc9369Vectors.ClientKey,
            Rfc9369Vectors.ClientIv, Rfc9369Vectors.ClientHp, Rfc9369Vectors.ServerInitialSecret, Rfc9369Vectors.ServerKey, Rfc9369Vectors.ServerIv,
            Rfc9369Vectors.ServerHp, Rfc9369Vectors.ClientInitialCryptoFrame, Rfc9369Vectors.ClientInitialHeader, Rfc9369Vectors.ClientInitialSample,
            Rfc9369Vectors.ClientInitialMask, Rfc9369Vectors.ClientInitialProtectedHeader, Rfc9369Vectors.ClientInitialProtected,
            Rfc9369Vectors.ServerInitialPayload, Rfc9369Vectors.ServerInitialHeader, Rfc9369Vectors.ServerInitialSample, Rfc9369Vectors.ServerInitialMask,
            Rfc9369Vectors.ServerInitialProtectedHeader, Rfc9369Vectors.ServerInitialProtected, Rfc9369Vectors.RetryPacket, Rfc9369Vectors.RetrySecret,
            Rfc9369Vectors.RetryKey, Rfc9369Vectors.RetryNonce, Rfc9369Vectors.ChaChaSecret, Rfc9369Vectors.ChaChaKey, Rfc9369Vectors.ChaChaIv,
            Rfc9369Vectors.ChaChaHp, Rfc9369Vectors.ChaChaKu, Rfc9369Vectors.ChaChaNonce, Rfc9369Vectors.ChaChaUnprotectedHeader,
            Rfc9369Vectors.ChaChaPayloadCiphertext, Rfc9369Vectors.ChaChaSample, Rfc9369Vectors.ChaChaMask, Rfc9369Vectors.ChaChaProtectedHeader,
            Rfc9369Vectors.ChaChaPacket);

    private static void AssertHex(string expectedHex, ReadOnlySpan<byte> actual) =>
        Assert.Equal(Hex.Format(Hex.Parse(expectedHex)), Hex.Format(actual));

    // ---- A.1 Keys ----

    [Theory]
    [MemberData(nameof(Versions))]
    public void Keys_InitialSecret(uint version)
    {
        Vectors v = For(version);
        byte[] initialSecret = new byte[32];
        HKDF.Extract(HashAlgorithmName.SHA256, Hex.Parse(v.Dcid), InitialSecrets.GetSalt(version), initialSecret);
        AssertHex(v.InitialSecret, initialSecret);
    }

    [Theory]
    [MemberData(nameof(Versions))]
    public void Keys_ClientAndServerInitialSecretsAndKeys(uint version)
    {
        Vectors v = For(version);
        InitialSecrets.Derive(version, Hex.Parse(v.Dcid), out byte[] clientSecret, out byte[] serverSecret);
        AssertHex(v.ClientSecret, clientSecret);
        AssertHex(v.ServerSecret, serverSecret);

        byte[] key = new byte[16], iv = new byte[12], hp = new byte[16];
        PacketProtectionKeys.DeriveKeyMaterial(CipherSuite.Aes128GcmSha256, clientSecret, version, key, iv, hp);
        AssertHex(v.ClientKey, key);
        AssertHex(v.ClientIv, iv);
        AssertHex(v.ClientHp, hp);

        PacketProtectionKeys.DeriveKeyMaterial(CipherSuite.Aes128GcmSha256, serverSecret, version, key, iv, hp);
        AssertHex(v.ServerKey, key);
        AssertHex(v.ServerIv, iv);
        AssertHex(v.ServerHp, hp);
    }

    [Theory]
    [MemberData(nameof(Versions))]
    public void Keys_CreateKeys_CarrySecretsSuiteAndVersion(uint version)
    {
        Vectors v = For(version);
        InitialSecrets.CreateKeys(version, Hex.Parse(v.Dcid), out PacketProtectionKeys client, out PacketProtectionKeys server);
        using (client)
        using (server)
        {
            AssertHex(v.ClientSecret, client.Secret);
            AssertHex(v.ServerSecret, server.Secret);
            Assert.Equal(CipherSuite.Aes128GcmSha256, client.Suite);
            Assert.Equal(version, server.Version);
        }
    }

    // ---- A.2 Client Initial ----

    private static byte[] ClientInitialPlaintext(Vectors v)
    {
        // The CRYPTO frame plus PADDING frames (zero bytes) to a 1162-byte payload.
        byte[] payload = new byte[1162];
        Hex.Parse(v.ClientCrypto).CopyTo(payload, 0);
        return payload;
    }

    [Theory]
    [MemberData(nameof(Versions))]
    public void ClientInitial_Protect_MatchesRfc(uint version)
    {
        Vectors v = For(version);
        InitialSecrets.CreateKeys(version, Hex.Parse(v.Dcid), out PacketProtectionKeys client, out PacketProtectionKeys server);
        using (client)
        using (server)
        {
            byte[] header = Hex.Parse(v.ClientHeader);
            byte[] payload = ClientInitialPlaintext(v);
            byte[] packet = new byte[header.Length + payload.Length + 16 + 7]; // spare bytes beyond the tag are ignored
            header.CopyTo(packet, 0);
            payload.CopyTo(packet, header.Length);

            int length = PacketProtector.Protect(client, packet, InitialPacketNumberOffset, 4, payload.Length, packetNumber: 2);

            Assert.Equal(1200, length);
            AssertHex(v.ClientPacket, packet.AsSpan(0, length));
            AssertHex(v.ClientProtectedHeader, packet.AsSpan(0, header.Length));
            AssertHex(v.ClientSample, packet.AsSpan(InitialPacketNumberOffset + 4, 16));
            Assert.Equal(1, client.EncryptedPackets);
        }
    }

    [Theory]
    [MemberData(nameof(Versions))]
    public void ClientInitial_Mask_MatchesRfc(uint version)
    {
        Vectors v = For(version);
        var hp = HeaderProtection.Create(CipherSuite.Aes128GcmSha256, Hex.Parse(v.ClientHp));
        byte[] mask = new byte[5];
        hp.ComputeMask(Hex.Parse(v.ClientSample), mask);
        AssertHex(v.ClientMask, mask);

        var software = HeaderProtection.Create(CipherSuite.Aes128GcmSha256, Hex.Parse(v.ClientHp), allowHardwareIntrinsics: false);
        Assert.False(software.IsHardwareAccelerated);
        software.ComputeMask(Hex.Parse(v.ClientSample), mask);
        AssertHex(v.ClientMask, mask);
    }

    [Theory]
    [MemberData(nameof(Versions))]
    public void ClientInitial_Unprotect_RecoversHeaderAndPayload(uint version)
    {
        Vectors v = For(version);
        InitialSecrets.CreateKeys(version, Hex.Parse(v.Dcid), out PacketProtectionKeys client, out PacketProtectionKeys server);
        using (client)
        using (server)
        {
            byte[] packet = Hex.Parse(v.ClientPacket);
            Assert.True(PacketProtector.TryRemoveHeaderProtection(client.HeaderProtection, packet, InitialPacketNumberOffset, -1, out long pn, out int pnLength));
            Assert.Equal(2, pn);
            Assert.Equal(4, pnLength);
            AssertHex(v.ClientHeader, packet.AsSpan(0, InitialPacketNumberOffset + pnLength));

            Assert.True(PacketProtector.TryDecryptPayload(client.Aead, packet, InitialPacketNumberOffset + pnLength, pn, out int payloadLength));
            Assert.Equal(1162, payloadLength);
            Assert.Equal(ClientInitialPlaintext(v), packet.AsSpan(InitialPacketNumberOffset + pnLength, payloadLength).ToArray());
            Assert.Equal(0, client.FailedDecryptions);
        }
    }

    // ---- A.3 Server Initial ----

    [Theory]
    [MemberData(nameof(Versions))]
    public void ServerInitial_Protect_MatchesRfc(uint version)
    {
        Vectors v = For(version);
        InitialSecrets.CreateKeys(version, Hex.Parse(v.Dcid), out PacketProtectionKeys client, out PacketProtectionKeys server);
        using (client)
        using (server)
        {
            byte[] header = Hex.Parse(v.ServerHeader);
            byte[] payload = Hex.Parse(v.ServerPayload);
            byte[] packet = new byte[header.Length + payload.Length + 16];
            header.CopyTo(packet, 0);
            payload.CopyTo(packet, header.Length);

            int length = PacketProtector.Protect(server, packet, InitialPacketNumberOffset, 2, payload.Length, packetNumber: 1);

            Assert.Equal(packet.Length, length);
            AssertHex(v.ServerPacket, packet);
            AssertHex(v.ServerProtectedHeader, packet.AsSpan(0, header.Length));

            byte[] mask = new byte[5];
            server.HeaderProtection.ComputeMask(Hex.Parse(v.ServerSample), mask);
            AssertHex(v.ServerMask, mask);
            AssertHex(v.ServerSample, packet.AsSpan(InitialPacketNumberOffset + 4, 16));
        }
    }

    [Theory]
    [MemberData(nameof(Versions))]
    public void ServerInitial_Unprotect_RecoversHeaderAndPayload(uint version)
    {
        Vectors v = For(version);
        InitialSecrets.CreateKeys(version, Hex.Parse(v.Dcid), out PacketProtectionKeys client, out PacketProtectionKeys server);
        using (client)
        using (server)
        {
            byte[] packet = Hex.Parse(v.ServerPacket);
            Assert.True(PacketProtector.TryRemoveHeaderProtection(server.HeaderProtection, packet, InitialPacketNumberOffset, -1, out long pn, out int pnLength));
            Assert.Equal(1, pn);
            Assert.Equal(2, pnLength);
            AssertHex(v.ServerHeader, packet.AsSpan(0, InitialPacketNumberOffset + pnLength));

            Assert.True(PacketProtector.TryDecryptPayload(server.Aead, packet, InitialPacketNumberOffset + pnLength, pn, out int payloadLength));
            AssertHex(v.ServerPayload, packet.AsSpan(InitialPacketNumberOffset + pnLength, payloadLength));
        }
    }

    // ---- A.4 Retry ----

    [Theory]
    [MemberData(nameof(Versions))]
    public void Retry_ComputeTag_MatchesRfc(uint version)
    {
        Vectors v = For(version);
        byte[] retry = Hex.Parse(v.Retry);
        byte[] tag = new byte[16];
        RetryIntegrity.ComputeTag(version, Hex.Parse(v.Dcid), retry.AsSpan(0, retry.Length - 16), tag);
        Assert.Equal(Hex.Format(retry.AsSpan(retry.Length - 16)), Hex.Format(tag));
        Assert.True(RetryIntegrity.Verify(version, Hex.Parse(v.Dcid), retry));
    }

    [Theory]
    [MemberData(nameof(Versions))]
    public void Retry_KeyAndNonce_DeriveFromRetrySecret(uint version)
    {
        Vectors v = For(version);
        PacketProtectionLabels labels = PacketProtectionLabels.For(version);
        byte[] key = HkdfLabel.Expand(HashAlgorithmName.SHA256, Hex.Parse(v.RetrySecret), labels.Key, default, 16);
        byte[] nonce = HkdfLabel.Expand(HashAlgorithmName.SHA256, Hex.Parse(v.RetrySecret), labels.Iv, default, 12);
        AssertHex(v.RetryKey, key);
        AssertHex(v.RetryNonce, nonce);
    }

    [Theory]
    [MemberData(nameof(Versions))]
    public void Retry_Verify_FalseOnEveryFlippedBit(uint version)
    {
        Vectors v = For(version);
        byte[] retry = Hex.Parse(v.Retry);
        byte[] odcid = Hex.Parse(v.Dcid);
        for (int bit = 0; bit < retry.Length * 8; bit++)
        {
            retry[bit / 8] ^= (byte)(1 << (bit % 8));
            Assert.False(RetryIntegrity.Verify(version, odcid, retry));
            retry[bit / 8] ^= (byte)(1 << (bit % 8));
        }

        for (int bit = 0; bit < odcid.Length * 8; bit++)
        {
            odcid[bit / 8] ^= (byte)(1 << (bit % 8));
            Assert.False(RetryIntegrity.Verify(version, odcid, retry));
            odcid[bit / 8] ^= (byte)(1 << (bit % 8));
        }

        Assert.True(RetryIntegrity.Verify(version, odcid, retry));
        uint otherVersion = version == QuicVersion.Version1 ? QuicVersion.Version2 : QuicVersion.Version1;
        Assert.False(RetryIntegrity.Verify(otherVersion, odcid, retry));
    }

    [Theory]
    [MemberData(nameof(Versions))]
    public void Retry_Verify_FalseOnTruncation(uint version)
    {
        Vectors v = For(version);
        byte[] retry = Hex.Parse(v.Retry);
        for (int length = 0; length < retry.Length; length++)
        {
            Assert.False(RetryIntegrity.Verify(version, Hex.Parse(v.Dcid), retry.AsSpan(0, length)));
        }
    }

    [Fact]
    public void Retry_LargeToken_UsesPooledPseudoPacket()
    {
        byte[] retry = new byte[1500];
        new Random(7).NextBytes(retry);
        byte[] odcid = Hex.Parse(Rfc9001Vectors.ClientDestinationConnectionId);
        RetryIntegrity.ComputeTag(QuicVersion.Version1, odcid, retry.AsSpan(0, retry.Length - 16), retry.AsSpan(retry.Length - 16));
        Assert.True(RetryIntegrity.Verify(QuicVersion.Version1, odcid, retry));
        retry[700] ^= 1;
        Assert.False(RetryIntegrity.Verify(QuicVersion.Version1, odcid, retry));
    }

    // ---- A.5 ChaCha20-Poly1305 Short Header Packet ----

    private const long ChaChaPacketNumber = 654360564;

    [Theory]
    [MemberData(nameof(Versions))]
    public void ChaCha_KeyDerivation_MatchesRfc(uint version)
    {
        Vectors v = For(version);
        byte[] key = new byte[32], iv = new byte[12], hp = new byte[32];
        PacketProtectionKeys.DeriveKeyMaterial(CipherSuite.ChaCha20Poly1305Sha256, Hex.Parse(v.ChaChaSecret), version, key, iv, hp);
        AssertHex(v.ChaChaKey, key);
        AssertHex(v.ChaChaIv, iv);
        AssertHex(v.ChaChaHp, hp);

        using var keys = PacketProtectionKeys.FromSecret(CipherSuite.ChaCha20Poly1305Sha256, Hex.Parse(v.ChaChaSecret), version);
        using PacketProtectionKeys next = keys.NextKeyPhase();
        AssertHex(v.ChaChaKu, next.Secret);

        byte[] nonce = new byte[12];
        keys.Aead.ComputeNonce(ChaChaPacketNumber, nonce);
        AssertHex(v.ChaChaNonce, nonce);
    }

    [Theory]
    [MemberData(nameof(Versions))]
    public void ChaCha_Protect_MatchesRfc(uint version)
    {
        Vectors v = For(version);
        using var keys = PacketProtectionKeys.FromSecret(CipherSuite.ChaCha20Poly1305Sha256, Hex.Parse(v.ChaChaSecret), version);
        byte[] packet = new byte[4 + 1 + 16];
        Hex.Parse(v.ChaChaHeader).CopyTo(packet, 0);
        packet[4] = 0x01; // PING

        int length = PacketProtector.Protect(keys, packet, packetNumberOffset: 1, packetNumberLength: 3, payloadLength: 1, ChaChaPacketNumber);

        Assert.Equal(21, length);
        AssertHex(v.ChaChaPacket, packet);
        AssertHex(v.ChaChaCiphertext, packet.AsSpan(4));
        AssertHex(v.ChaChaProtectedHeader, packet.AsSpan(0, 4));
        AssertHex(v.ChaChaSample, packet.AsSpan(5, 16));

        byte[] mask = new byte[5];
        keys.HeaderProtection.ComputeMask(Hex.Parse(v.ChaChaSample), mask);
        AssertHex(v.ChaChaMask, mask);
    }

    [Theory]
    [MemberData(nameof(Versions))]
    public void ChaCha_Unprotect_RecoversHeaderAndPayload(uint version)
    {
        Vectors v = For(version);
        using var keys = PacketProtectionKeys.FromSecret(CipherSuite.ChaCha20Poly1305Sha256, Hex.Parse(v.ChaChaSecret), version);
        byte[] packet = Hex.Parse(v.ChaChaPacket);

        Assert.True(PacketProtector.TryRemoveHeaderProtection(keys.HeaderProtection, packet, 1, ChaChaPacketNumber - 1, out long pn, out int pnLength));
        Assert.Equal(ChaChaPacketNumber, pn);
        Assert.Equal(3, pnLength);
        AssertHex(v.ChaChaHeader, packet.AsSpan(0, 4));

        Assert.True(PacketProtector.TryDecryptPayload(keys.Aead, packet, 4, pn, out int payloadLength));
        Assert.Equal(1, payloadLength);
        Assert.Equal(0x01, packet[4]);
    }
}
