using System.Security.Cryptography;
using KestrelQuic.Tls;

namespace KestrelQuic.Tests.Tls;

/// <summary>Key schedule against RFC 8448 §3 "Simple 1-RTT Handshake" (TLS_AES_128_GCM_SHA256, x25519).</summary>
public class KeyScheduleTests
{
    private static byte[] Hex(string s) => Convert.FromHexString(s.Replace(" ", string.Empty, StringComparison.Ordinal));

    [Fact]
    public void Rfc8448_Simple1Rtt_HandshakeSecrets()
    {
        var schedule = new KeySchedule(HashAlgorithmName.SHA256, []);
        Assert.Equal(Hex("33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a"), schedule.EarlySecret);

        // {server} extract secret "handshake": IKM = the x25519 shared secret.
        schedule.DeriveHandshakeSecret(Hex("8bd4054fb55b9d63fdfbacf9f04b9f0d35e6d63f537563efd46272900f89492d"));
        Assert.Equal(Hex("1dc826e93606aa6fdc0aadc12f741b01046aa6b99f691ed221a9f0ca043fbeac"), schedule.HandshakeSecret);

        // Hash(ClientHello || ServerHello).
        byte[] helloHash = Hex("860c06edc07858ee8e78f0e7428c58edd6b43f2ca3e6e95f02ed063cf0e1cad8");
        Assert.Equal(Hex("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21"), schedule.DeriveSecret(schedule.HandshakeSecret!, "c hs traffic"u8, helloHash));
        Assert.Equal(Hex("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38"), schedule.DeriveSecret(schedule.HandshakeSecret!, "s hs traffic"u8, helloHash));

        schedule.DeriveMasterSecret();
        Assert.Equal(Hex("18df06843d13a08bf2a449844c5f8a478001bc4d4c627984d5a41da8d0402919"), schedule.MasterSecret);
    }
}
