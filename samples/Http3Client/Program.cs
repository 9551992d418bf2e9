using KestrelQuic.Samples.Http3Client;

using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cancel.Cancel();
};

await using Stream stdout = Console.OpenStandardOutput();
return await Http3ClientApp.RunAsync(args, stdout, Console.Error, cancel.Token);
